using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference;

/// <summary>A finished beam: its generated tokens and scores.</summary>
/// <param name="Tokens">Generated token ids (EOS not included).</param>
/// <param name="LogProb">Sum of the tokens' log-probabilities (EOS included when it ended the beam).</param>
/// <param name="Score">The score beams are ranked by: <see cref="LogProb"/> over the length penalty.</param>
/// <param name="FinishReason">EOS (<see cref="FinishReason.Stop"/>) or the token limit.</param>
public sealed record BeamHypothesis(IReadOnlyList<int> Tokens, double LogProb, double Score, FinishReason FinishReason);

/// <summary>Settings of <see cref="BeamSearch"/>.</summary>
public sealed record BeamSearchOptions
{
    /// <summary>Beams kept at every step.</summary>
    public int Beams
    {
        get;
        init => field = value is > 0 and <= 64 ? value : throw new ArgumentException($"beams = {value} must be between 1 and 64");
    } = 4;

    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"max_tokens = {value} must be positive");
    } = 64;

    /// <summary>GNMT's length penalty exponent α: scores are log p / ((5 + length) / 6)^α; 0 ranks by log p alone.</summary>
    public double LengthPenalty
    {
        get;
        init => field = value is >= 0 and <= 5 ? value : throw new ArgumentException($"length_penalty = {value} must be between 0 and 5");
    }
}

/// <summary>
/// Beam search over a <see cref="LanguageModel"/> of any family (an encoder-decoder encodes the prompt once; its beams share the memory): keeps the <c>k</c> most likely partial continuations,
/// extends each by every token, and keeps the best <c>k</c> again; a beam that emits EOS is finished.
/// The beams run as one batch over a KV cache whose rows are reordered when beams change parents.
/// <see cref="SearchWithoutCache"/> recomputes every prefix and is the reference the tests hold it to.
/// </summary>
public sealed class BeamSearch
{
    private readonly LanguageModel model;
    private readonly int eosId;
    private readonly int startId;

    /// <summary>
    /// Creates a search over <paramref name="model"/>; <paramref name="eosId"/> finishes a beam, and an
    /// encoder-decoder's decoder starts from <paramref name="startId"/> (seqio: the vocabulary's pad id).
    /// </summary>
    public BeamSearch(LanguageModel model, int eosId, int startId = 0)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        this.eosId = eosId;
        this.startId = startId;
    }

    /// <summary>The finished hypotheses, best first (at most <see cref="BeamSearchOptions.Beams"/>).</summary>
    /// <exception cref="ArgumentException">The prompt is empty or leaves no room in the context.</exception>
    public IReadOnlyList<BeamHypothesis> Search(IReadOnlyList<int> prompt, BeamSearchOptions options)
    {
        int budget = CheckPrompt(prompt, options);
        var device = ReferenceDecoder.DeviceOf(model);
        int[] prefix = model.DecoderPrefix(prompt, startId);
        model.eval();
        using var cache = KvCache.For(model, options.Beams, prefix.Length + budget);
        // All beams start as the prompt; only the first counts until the first expansion.
        var beams = new List<(List<int> Tokens, double LogProb)> { ([], 0.0) };
        var finished = new List<BeamHypothesis>();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            if (model.IsEncoderDecoder)
                cache.Memory = model.Encode(tensor(prompt.Select(t => (long)t).ToArray(), device: device).unsqueeze(0)); // (1, S): shared by the beams
            var input = tensor(prefix.Select(t => (long)t).ToArray(), device: device).unsqueeze(0).expand(options.Beams, -1); // (K, T)
            var logProbs = cache.Run(model, input.contiguous())[.., -1].log_softmax(-1).cpu();                              // (K, V)
            for (int step = 0; step < budget; step++)
            {
                var (next, parents) = Expand(beams, logProbs, options, finished, step + 1 == budget);
                if (next.Count == 0) break;
                beams = next;
                using var stepScope = NewDisposeScope();
                var rows = tensor(parents.Concat(Enumerable.Repeat(parents[0], options.Beams - parents.Count)).Select(p => (long)p).ToArray()); // (K)
                cache.ReorderRows(rows);
                var last = tensor(beams.Select(b => (long)b.Tokens[^1]).Concat(Enumerable.Repeat((long)beams[0].Tokens[^1], options.Beams - beams.Count)).ToArray(), device: device).unsqueeze(1); // (K, 1)
                logProbs.Dispose();
                logProbs = cache.Run(model, last)[.., -1].log_softmax(-1).cpu().MoveToOuterDisposeScope();                    // (K, V)
            }
        }
        return Best(finished, options);
    }

    /// <summary>The same search, recomputing every beam's whole sequence at every step (no cache).</summary>
    public IReadOnlyList<BeamHypothesis> SearchWithoutCache(IReadOnlyList<int> prompt, BeamSearchOptions options)
    {
        int budget = CheckPrompt(prompt, options);
        var device = ReferenceDecoder.DeviceOf(model);
        model.eval();
        var beams = new List<(List<int> Tokens, double LogProb)> { ([], 0.0) };
        var finished = new List<BeamHypothesis>();
        for (int step = 0; step < budget && beams.Count > 0; step++)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var continuations = tensor(beams.SelectMany(b => b.Tokens).Select(t => (long)t).ToArray(), [beams.Count, step], int64, device); // (K, G)
            var logProbs = ReferenceDecoder.Logits(model, prompt, continuations, startId)[.., -1].log_softmax(-1).cpu();                   // (K, V)
            (beams, _) = Expand(beams, logProbs, options, finished, step + 1 == budget);
        }
        return Best(finished, options);
    }

    /// <summary>
    /// Scores every extension of every live beam, moves those ending in EOS (and, at the last step,
    /// all) to <paramref name="finished"/>, and keeps the best live ones; returns them with their parents' rows.
    /// </summary>
    private (List<(List<int> Tokens, double LogProb)> Beams, List<int> Parents) Expand(List<(List<int> Tokens, double LogProb)> beams, Tensor logProbs,
        BeamSearchOptions options, List<BeamHypothesis> finished, bool last)
    {
        int vocab = (int)logProbs.shape[1];
        var scores = logProbs.narrow(0, 0, beams.Count).to(float64).data<double>().ToArray(); // (K·V), row-major
        var candidates = Enumerable.Range(0, beams.Count * vocab)
            .Select(i => (Parent: i / vocab, Token: i % vocab, LogProb: beams[i / vocab].LogProb + scores[i]))
            .OrderByDescending(c => c.LogProb).ThenBy(c => c.Parent).ThenBy(c => c.Token)
            .Take(2 * options.Beams); // enough that k live beams remain after removing finished ones
        var next = new List<(List<int>, double)>();
        var parents = new List<int>();
        foreach (var c in candidates)
        {
            var tokens = beams[c.Parent].Tokens;
            if (c.Token == eosId)
                finished.Add(Hypothesis([.. tokens], c.LogProb, FinishReason.Stop, options));
            else if (next.Count < options.Beams)
            {
                if (last) finished.Add(Hypothesis([.. tokens, c.Token], c.LogProb, FinishReason.Length, options));
                else
                {
                    next.Add(([.. tokens, c.Token], c.LogProb));
                    parents.Add(c.Parent);
                }
            }
        }
        return (next, parents);
    }

    private static BeamHypothesis Hypothesis(List<int> tokens, double logProb, FinishReason reason, BeamSearchOptions options) =>
        new(tokens, logProb, logProb / Math.Pow((5.0 + tokens.Count + (reason == FinishReason.Stop ? 1 : 0)) / 6.0, options.LengthPenalty), reason);

    private static IReadOnlyList<BeamHypothesis> Best(List<BeamHypothesis> finished, BeamSearchOptions options) =>
        [.. finished.OrderByDescending(h => h.Score).Take(options.Beams)];

    private int CheckPrompt(IReadOnlyList<int> prompt, BeamSearchOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        return TextGenerator.GenerationBudget(model, prompt, options.MaxTokens);
    }
}
