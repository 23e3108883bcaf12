using Loom.Data;
using Loom.Inference.Constraints;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Chooses one request's next token: penalties for tokens it already generated, then
/// <see cref="Sampler"/> (greedy, or temperature with top-k and top-p) with the request's own
/// generator, plus the log-probabilities the request asked for. A request with an output constraint
/// (<see cref="GenerationRequest.Constraint"/>) samples only among the tokens the constraint allows.
/// </summary>
/// <remarks>
/// <see cref="Next"/> samples one row on its own: the simple reference path. The engine samples all rows of a step at
/// once with <see cref="BatchSampler"/>, which reads this state and gives the same tokens.
/// </remarks>
public sealed class RequestSampler : IDisposable
{
    private readonly SamplingOptions options;
    private readonly IVocabulary vocabulary;
    private readonly Generator generator;
    private readonly Dictionary<int, int> generatedCounts = [];
    private readonly ITokenConstraint? constraint;
    private bool[]? allowed;

    /// <summary>Creates the sampler of one request; a seed makes its draws reproducible on any device.</summary>
    /// <param name="options">How to sample.</param>
    /// <param name="vocabulary">The model's vocabulary.</param>
    /// <param name="constraint">The request's output constraint, or null for none.</param>
    public RequestSampler(SamplingOptions options, IVocabulary vocabulary, ITokenConstraint? constraint = null)
    {
        this.constraint = constraint;
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
        var adjusted = Constrain(Penalize(known.to(float32)));                                 // (V')
        int token = (int)Sampler.Sample(adjusted.unsqueeze(0), options, generator).item<long>();
        TokenLogProb? logProb = options.LogProbs is int top ? LogProbOf(adjusted, token, top) : null;
        Record(token);
        return (token, logProb);
    }

    /// <summary>How the request samples.</summary>
    internal SamplingOptions Options => options;

    /// <summary>The request's generator (a CPU generator: draws happen on the host, as <see cref="Sampler.Sample"/>'s).</summary>
    internal Generator Generator => generator;

    /// <summary>How often each token was generated so far, for the penalties.</summary>
    internal IReadOnlyDictionary<int, int> GeneratedCounts => generatedCounts;

    /// <summary>Whether a presence or frequency penalty applies at this step.</summary>
    internal bool Penalizes => generatedCounts.Count > 0 && (options.PresencePenalty != 0 || options.FrequencyPenalty != 0);

    /// <summary>Whether the request has an output constraint.</summary>
    internal bool IsConstrained => constraint is not null;

    /// <summary>The tokens the constraint allows now, (vocabulary size); only for a constrained request.</summary>
    /// <exception cref="InvalidOperationException">The constraint allows no token (its grammar has a dead end).</exception>
    internal bool[] Allowed()
    {
        if (constraint is null) throw new InvalidOperationException("the request has no output constraint");
        allowed ??= new bool[vocabulary.Size];
        constraint.FillAllowed(allowed);
        if (!allowed.Contains(true))
            throw new InvalidOperationException("the output constraint allows no token here: its grammar has a dead end");
        return allowed;
    }

    /// <summary>Records a chosen token: it counts for the penalties, and a non-EOS token advances the constraint.</summary>
    internal void Record(int token)
    {
        if (constraint is not null && token != vocabulary.EosId) constraint.Advance(token);
        generatedCounts[token] = generatedCounts.GetValueOrDefault(token) + 1;
    }

    /// <summary>Sets the logits of tokens the constraint forbids to −∞ (the end-of-sequence id is allowed only where the output is whole).</summary>
    private Tensor Constrain(Tensor logits)
    {
        if (constraint is null) return logits;
        Allowed();
        var mask = tensor(allowed!, device: logits.device).narrow(0, 0, logits.shape[0]);                              // (V')
        return logits.masked_fill(mask.logical_not(), RootedScalars.NegativeInfinity);                                        // (V')
    }

    /// <summary>OpenAI's penalties: logit − count·frequency − (count &gt; 0)·presence, over generated tokens.</summary>
    private Tensor Penalize(Tensor logits)
    {
        if (!Penalizes) return logits;
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
