using Loom.Models;

namespace Loom.Inference.Speculative;

/// <summary>How speculative decoding proposes tokens and how many per round.</summary>
public sealed record SpeculativeOptions
{
    /// <summary>Most tokens proposed per round, k (1..32): a round runs the target once over k + 1 positions and yields 1..k + 1 tokens.</summary>
    public int DraftTokens
    {
        get;
        init => field = value is >= 1 and <= 32 ? value : throw new ArgumentException($"speculative tokens = {value} must be in 1..32");
    } = 4;

    /// <summary>
    /// The draft model, decoder-only and sharing the target's vocabulary (a smaller model trained on the same data);
    /// null proposes by n-gram prompt lookup (<see cref="NGramProposer"/>) instead.
    /// </summary>
    public LanguageModel? Draft
    {
        get;
        init => field = value is { IsEncoderDecoder: true }
            ? throw new ArgumentException($"the draft is an encoder-decoder ({value.Options.Architecture}) model: speculative decoding takes decoder-only drafts")
            : value;
    }

    /// <summary>Longest suffix the n-gram proposer matches (1..16).</summary>
    public int NGramMax
    {
        get;
        init => field = value is >= 1 and <= 16 ? value : throw new ArgumentException($"n-gram max = {value} must be in 1..16");
    } = 3;

    /// <summary>Proposes with the draft model, or by n-gram lookup when there is none; one proposer per sequence.</summary>
    /// <param name="capacity">The sequence's most tokens (prompt + output).</param>
    public IDraftProposer CreateProposer(int capacity) =>
        Draft is { } draft ? new DraftModelProposer(draft, capacity) : new NGramProposer(NGramMax);

    /// <summary>The proposer and k in words, for logs: "draft model (N parameters), k = 4" or "n-gram prompt lookup (n &lt;= 3), k = 4".</summary>
    public string Describe() => Draft is { } d
        ? $"draft model ({d.ParameterCount:N0} parameters), k = {DraftTokens}"
        : $"n-gram prompt lookup (n <= {NGramMax}), k = {DraftTokens}";
}
