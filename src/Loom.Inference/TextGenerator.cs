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
    private readonly DecoderLm model;
    private readonly int eosId;

    /// <summary>Creates a generator for <paramref name="model"/>; <paramref name="eosId"/> ends a sequence.</summary>
    public TextGenerator(DecoderLm model, int eosId)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        this.eosId = eosId;
    }

    /// <summary>The reason the last enumeration stopped.</summary>
    public FinishReason LastFinishReason { get; private set; }

    /// <summary>Yields generated token ids one by one (EOS is not yielded).</summary>
    /// <exception cref="ArgumentException">The prompt is empty or does not fit the model's context.</exception>
    public IEnumerable<int> Generate(IReadOnlyList<int> prompt, SamplingOptions options)
    {
        int budget = CheckPrompt(prompt, options);
        var device = model.parameters().First().device;
        using var generator = MakeGenerator(options);
        using var cache = new KvCache(model.Options, 1, prompt.Count + budget, device);
        model.eval();
        LastFinishReason = FinishReason.Length;
        Tensor? next = null;
        for (int i = 0; i < budget; i++)
        {
            int token;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var input = next ?? tensor(prompt.Select(t => (long)t).ToArray(), device: device).unsqueeze(0); // (1, T)
                var logits = model.Forward(input, cache);                                                        // (1, T, V)
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
        var device = model.parameters().First().device;
        using var generator = MakeGenerator(options);
        var sequence = prompt.Select(t => (long)t).ToList();
        model.eval();
        for (int i = 0; i < budget; i++)
        {
            int token;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var logits = model.forward(tensor(sequence.ToArray(), device: device).unsqueeze(0)); // (1, S, V)
                token = (int)Sampler.Sample(logits[.., -1], options, generator).item<long>();
            }
            if (token == eosId && options.StopAtEos) yield break;
            sequence.Add(token);
            yield return token;
        }
    }

    private int CheckPrompt(IReadOnlyList<int> prompt, SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        int context = model.Options.MaxSequenceLength;
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: pass at least one token (for a byte model, any text)");
        if (prompt.Count >= context) throw new ArgumentException($"the prompt has {prompt.Count} tokens; the model's context is {context}: shorten it");
        return Math.Min(options.MaxTokens, context - prompt.Count);
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
