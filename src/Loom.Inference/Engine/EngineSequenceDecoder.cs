using Loom.Data;
using Loom.Models;

namespace Loom.Inference.Engine;

/// <summary>
/// Greedy decoding of many prompts at once through a <see cref="ContinuousBatchingEngine"/>: what the
/// trainer and <c>loom eval</c> inject into the task evaluator. The engine gives each prompt the tokens
/// it would get decoded alone (its tests hold it to the reference), at batch speed.
/// </summary>
/// <param name="vocabulary">The model's vocabulary (its pad id starts an encoder-decoder's decoder; its EOS ends a sequence).</param>
public sealed class EngineSequenceDecoder(IVocabulary vocabulary) : ISequenceDecoder
{
    private readonly IVocabulary vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));

    /// <inheritdoc />
    public IReadOnlyList<DecodedSequence> Decode(LanguageModel model, IReadOnlyList<int[]> prompts, DecodeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.EosId != vocabulary.EosId || (model.IsEncoderDecoder && settings.StartId != vocabulary.PadId))
            throw new ArgumentException($"the decode settings (eos {settings.EosId}, start {settings.StartId}) differ from the vocabulary's (eos {vocabulary.EosId}, pad {vocabulary.PadId}) that the engine uses");
        if (prompts.Count == 0) return [];
        bool wasTraining = model.training;
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = settings.MaxTokens, StopAtEos = true, Seed = 0 };
        try
        {
            using var engine = new ContinuousBatchingEngine(model, vocabulary, "evaluation",
                new EngineOptions { MaxRunning = settings.BatchSize, MaxQueue = prompts.Count });
            async Task<DecodedSequence> DecodeOne(int[] prompt)
            {
                var tokens = new List<int>();
                FinishReason? finish = null;
                await foreach (var update in engine.GenerateAsync(new GenerationRequest(prompt, sampling)).ConfigureAwait(false))
                {
                    tokens.AddRange(update.Tokens);
                    finish = update.FinishReason ?? finish;
                }
                return new DecodedSequence([.. tokens], finish == FinishReason.Stop);
            }
            return Task.WhenAll(prompts.Select(DecodeOne)).GetAwaiter().GetResult();
        }
        finally
        {
            if (wasTraining) model.train(); // the engine put it in eval mode
        }
    }
}
