using Loom.Data;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>How <see cref="ISequenceDecoder.Decode"/> decodes: greedily, up to a length, until end of sequence.</summary>
/// <param name="MaxTokens">Most tokens to generate per prompt.</param>
/// <param name="EosId">The token that ends a sequence (not included in the result).</param>
/// <param name="StartId">The token an encoder-decoder's decoder starts from (seqio: the pad id).</param>
/// <param name="BatchSize">Prompts decoded together.</param>
/// <param name="VocabularySize">Ids the vocabulary has: only they are candidates (a model's embedding may be padded past them); null = every id the model has.</param>
public sealed record DecodeSettings(int MaxTokens, int EosId, int StartId, int BatchSize = 16, int? VocabularySize = null);

/// <summary>A decoded continuation.</summary>
/// <param name="Tokens">The generated tokens, without the end-of-sequence token.</param>
/// <param name="Finished">True when the end-of-sequence token ended it, false when the length did.</param>
public sealed record DecodedSequence(int[] Tokens, bool Finished);

/// <summary>
/// Greedy decoding of many prompts, injected into evaluators (t5x's <c>predict_batch</c>) so that
/// training need not know the inference engine. For a decoder-only model a prompt is the decoder's
/// context; for an encoder-decoder it is the encoder's input and the decoder starts from
/// <see cref="DecodeSettings.StartId"/>.
/// </summary>
public interface ISequenceDecoder
{
    /// <summary>Greedily decodes every prompt; the results are in the prompts' order.</summary>
    IReadOnlyList<DecodedSequence> Decode(LanguageModel model, IReadOnlyList<int[]> prompts, DecodeSettings settings);
}

/// <summary>
/// The reference decoder: one prompt at a time, recomputing the whole sequence through
/// <see cref="LanguageModel.Forward(FeatureBatch)"/> for every new token, with no cache. Slow and
/// plainly right; fast decoders are tested against it.
/// </summary>
public sealed class ReferenceDecoder : ISequenceDecoder
{
    /// <inheritdoc />
    public IReadOnlyList<DecodedSequence> Decode(LanguageModel model, IReadOnlyList<int[]> prompts, DecodeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(settings);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            return [.. prompts.Select(p => DecodeOne(model, p, settings))];
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>Greedy continuation of one prompt.</summary>
    public static DecodedSequence DecodeOne(LanguageModel model, int[] prompt, DecodeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(settings);
        var generated = new List<int>();
        for (int i = 0; i < settings.MaxTokens; i++)
        {
            int next;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var logits = LastLogits(model, prompt, generated, settings.StartId); // (V)
                if (settings.VocabularySize is int known && known < logits.shape[0]) logits = logits.narrow(0, 0, known);
                next = (int)logits.argmax().item<long>();
            }
            if (next == settings.EosId) return new DecodedSequence([.. generated], true);
            generated.Add(next);
        }
        return new DecodedSequence([.. generated], false);
    }

    /// <summary>
    /// The logits, (V), of the token after <paramref name="generated"/>: a decoder-only model reads
    /// prompt ++ generated; an encoder-decoder encodes the prompt and decodes start ++ generated.
    /// </summary>
    public static Tensor LastLogits(LanguageModel model, IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int startId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generated);
        var device = DeviceOf(model);
        var continuation = tensor(generated.Select(t => (long)t).ToArray(), int64, device).unsqueeze(0); // (1, G)
        return Logits(model, prompt, continuation, startId)[0, -1];                                       // (V)
    }

    /// <summary>
    /// The no-cache logits, (K, T, V), of K continuations, (K, G) int64, of one prompt: a decoder-only
    /// model reads prompt ++ continuation (T = P + G); an encoder-decoder encodes the prompt and decodes
    /// start ++ continuation (T = 1 + G).
    /// </summary>
    public static Tensor Logits(LanguageModel model, IReadOnlyList<int> prompt, Tensor continuations, int startId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(continuations);
        var device = continuations.device;
        long k = continuations.shape[0];
        Tensor Rows(IEnumerable<int> ids) => tensor(ids.Select(t => (long)t).ToArray(), int64, device).unsqueeze(0).expand(k, -1); // (K, n)
        var decoder = cat([Rows(model.DecoderPrefix(prompt, startId)), continuations], 1);                                       // (K, T)
        var features = model.IsEncoderDecoder
            ? new FeatureBatch(new Dictionary<string, Tensor>
            {
                [FeatureNames.EncoderInputTokens] = Rows(prompt),
                [FeatureNames.DecoderInputTokens] = decoder,
                [FeatureNames.DecoderTargetTokens] = decoder,
            })
            : FeatureBatch.Decoder(decoder, decoder);
        return model.Forward(features).Logits; // (K, T, V)
    }

    /// <summary>The device a model's weights live on.</summary>
    public static Device DeviceOf(LanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return (model.parameters().FirstOrDefault() ?? model.buffers().First()).device;
    }
}
