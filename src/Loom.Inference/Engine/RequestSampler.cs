using Loom.Data;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Chooses one request's next token: penalties for tokens it already generated, then
/// <see cref="Sampler"/> (greedy, or temperature with top-k and top-p) with the request's own
/// generator, plus the log-probabilities the request asked for.
/// </summary>
public sealed class RequestSampler : IDisposable
{
    private readonly SamplingOptions options;
    private readonly IVocabulary vocabulary;
    private readonly Generator generator;
    private readonly Dictionary<int, int> generatedCounts = [];

    /// <summary>Creates the sampler of one request; a seed makes its draws reproducible on any device.</summary>
    public RequestSampler(SamplingOptions options, IVocabulary vocabulary)
    {
        this.options = options ?? throw new ArgumentNullException(nameof(options));
        this.vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        generator = new Generator(0);
        if (options.Seed is long seed) generator.manual_seed(seed);
        else generator.seed();
    }

    /// <summary>
    /// Picks the next token from the last position's logits, (V), and records it as generated. Only ids the
    /// vocabulary has are candidates: a model's embedding is often padded past its vocabulary (PaLM pads to a
    /// multiple of 128), and an undertrained model may still favour an id no text can come from.
    /// </summary>
    public (int Token, TokenLogProb? LogProb) Next(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        using var scope = NewDisposeScope();
        var known = logits.narrow(0, 0, Math.Min(logits.shape[0], vocabulary.Size));            // (V'), V' ≤ V
        var adjusted = Penalize(known.to(float32));                                            // (V')
        int token = (int)Sampler.Sample(adjusted.unsqueeze(0), options, generator).item<long>();
        TokenLogProb? logProb = options.LogProbs is int top ? LogProbOf(adjusted, token, top) : null;
        generatedCounts[token] = generatedCounts.GetValueOrDefault(token) + 1;
        return (token, logProb);
    }

    /// <summary>OpenAI's penalties: logit − count·frequency − (count &gt; 0)·presence, over generated tokens.</summary>
    private Tensor Penalize(Tensor logits)
    {
        if (generatedCounts.Count == 0 || (options.PresencePenalty == 0 && options.FrequencyPenalty == 0)) return logits;
        var ids = tensor(generatedCounts.Keys.Select(k => (long)k).ToArray(), device: logits.device);                  // (N)
        var counts = tensor(generatedCounts.Values.Select(c => (float)c).ToArray(), device: logits.device);           // (N)
        var penalty = counts * (float)options.FrequencyPenalty + (float)options.PresencePenalty;                      // (N)
        return logits.clone().index_put_(logits.index_select(0, ids) - penalty, ids);                                  // (V), the caller's logits untouched
    }

    private TokenLogProb LogProbOf(Tensor logits, int token, int top)
    {
        var logProbs = logits.log_softmax(-1).cpu();                                                                  // (V)
        var alternatives = new List<TokenLogProb>();
        if (top > 0)
        {
            var (values, indices) = logProbs.topk(Math.Min(top, (int)logProbs.shape[0]));
            for (int i = 0; i < values.shape[0]; i++)
            {
                int id = (int)indices[i].item<long>();
                alternatives.Add(new TokenLogProb(id, vocabulary.Decode([id]), values[i].item<float>(), []));
            }
        }
        return new TokenLogProb(token, vocabulary.Decode([token]), logProbs[token].item<float>(), alternatives);
    }

    /// <summary>Frees the generator.</summary>
    public void Dispose() => generator.Dispose();
}
