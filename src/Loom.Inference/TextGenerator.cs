using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference;

/// <summary>Why generation stopped.</summary>
public enum FinishReason
{
    /// <summary>The model emitted end-of-sequence.</summary>
    Stop,

    /// <summary>MaxTokens or the model's context length was reached.</summary>
    Length,

    /// <summary>A stop sequence was generated (it is not part of the output).</summary>
    StopSequence,

    /// <summary>The caller cancelled the request.</summary>
    Cancelled,
}

/// <summary>
/// Generates tokens for one prompt with a KV cache: one prefill over the prompt, then one decode
/// step per token that feeds only the newest token. <see cref="GenerateWithoutCache"/> is the
/// reference path that recomputes the whole prefix for every token; tests require both to agree.
/// </summary>
public sealed class TextGenerator
{
    private readonly LanguageModel model;
    private readonly int eosId;
    private readonly int startId;

    /// <summary>
    /// Creates a generator for <paramref name="model"/>; <paramref name="eosId"/> ends a sequence, and an
    /// encoder-decoder's decoder starts from <paramref name="startId"/> (seqio: the vocabulary's pad id).
    /// </summary>
    public TextGenerator(LanguageModel model, int eosId, int startId = 0)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        this.eosId = eosId;
        this.startId = startId;
    }

    /// <summary>The reason the last enumeration stopped.</summary>
    public FinishReason LastFinishReason { get; private set; }

    /// <summary>Yields generated token ids one by one (EOS is not yielded).</summary>
    /// <exception cref="ArgumentException">The prompt is empty or does not fit the model's context.</exception>
    public IEnumerable<int> Generate(IReadOnlyList<int> prompt, SamplingOptions options)
    {
        int budget = CheckPrompt(prompt, options);
        var device = ReferenceDecoder.DeviceOf(model);
        int[] prefix = model.DecoderPrefix(prompt, startId);
        using var generator = MakeGenerator(options);
        using var cache = KvCache.For(model, 1, prefix.Length + budget);
        model.eval();
        if (model.IsEncoderDecoder)
            using (var scope = NewDisposeScope())
            using (no_grad())
                cache.Memory = model.Encode(tensor(prompt.Select(t => (long)t).ToArray(), device: device).unsqueeze(0)); // the encoder runs once
        LastFinishReason = FinishReason.Length;
        Tensor? next = null;
        for (int i = 0; i < budget; i++)
        {
            int token;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var input = next ?? tensor(prefix.Select(t => (long)t).ToArray(), device: device).unsqueeze(0); // (1, T)
                var logits = cache.Run(model, input);                                                            // (1, T, V)
                var id = Sampler.Sample(logits[.., -1], options, generator);                                    // (1)
                token = (int)id.item<long>();
                next?.Dispose();
                next = id.unsqueeze(0).DetachFromDisposeScope();                                                // (1, 1)
            }
            if (token == eosId && options.StopAtEos)
            {
                LastFinishReason = FinishReason.Stop;
                break;
            }
            yield return token;
        }
        next?.Dispose();
    }

    /// <summary>Reference path: the same sampling, recomputing the whole sequence for every new token.</summary>
    public IEnumerable<int> GenerateWithoutCache(IReadOnlyList<int> prompt, SamplingOptions options)
    {
        int budget = CheckPrompt(prompt, options);
        var device = ReferenceDecoder.DeviceOf(model);
        using var generator = MakeGenerator(options);
        var generated = new List<long>();
        model.eval();
        for (int i = 0; i < budget; i++)
        {
            int token;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var logits = ReferenceDecoder.Logits(model, prompt, tensor(generated.ToArray(), int64, device).unsqueeze(0), startId); // (1, S, V)
                token = (int)Sampler.Sample(logits[.., -1], options, generator).item<long>();
            }
            if (token == eosId && options.StopAtEos) yield break;
            generated.Add(token);
            yield return token;
        }
    }

    private int CheckPrompt(IReadOnlyList<int> prompt, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        return GenerationBudget(model, prompt, options.MaxTokens);
    }

    /// <summary>
    /// How many tokens a prompt leaves room for: the context minus the prompt for a decoder-only model;
    /// for an encoder-decoder the prompt must fit the encoder and the decoder holds the start token and the output.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty or too long.</exception>
    internal static int GenerationBudget(LanguageModel model, IReadOnlyList<int> prompt, int maxTokens)
    {
        int context = model.ContextLength;
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: pass at least one token (for a byte model, any text)");
        if (model.IsEncoderDecoder)
        {
            if (prompt.Count > context) throw new ArgumentException($"the prompt has {prompt.Count} tokens; the model's encoder takes {context}: shorten it");
            return Math.Min(maxTokens, context - 1);
        }
        if (prompt.Count >= context) throw new ArgumentException($"the prompt has {prompt.Count} tokens; the model's context is {context}: shorten it");
        return Math.Min(maxTokens, context - prompt.Count);
    }

    /// <summary>A CPU generator: <see cref="Sampler"/> draws on the CPU, so a seed gives the same draws on every device.</summary>
    private static Generator MakeGenerator(SamplingOptions options)
    {
        var g = new Generator(0);
        if (options.Seed is long seed) g.manual_seed(seed);
        else g.seed();
        return g;
    }
}
