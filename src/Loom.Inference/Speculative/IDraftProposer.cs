using static TorchSharp.torch;

namespace Loom.Inference.Speculative;

/// <summary>Draft tokens for one speculative round.</summary>
/// <param name="Tokens">Up to k proposed tokens continuing the sequence (possibly none).</param>
/// <param name="Probabilities">The draft's distribution q each token was drawn from, (k, V) float32 on the CPU; null when the
/// proposals are deterministic (greedy decoding, or n-gram lookup): each q is then a point mass on its token.</param>
public sealed record DraftProposal(IReadOnlyList<int> Tokens, Tensor? Probabilities)
{
    /// <summary>No proposal: the round decodes one token, as plain decoding does.</summary>
    public static DraftProposal None { get; } = new([], null);
}

/// <summary>
/// Proposes draft tokens for one sequence, which the target model then verifies (<see cref="SpeculativeDecoder"/>).
/// One instance serves one sequence; <see cref="SpeculativeDecoder"/> calls <see cref="Propose"/> once per round, inside
/// its dispose scope, with the whole sequence so far: a proposer that caches state rolls it back to the part of the
/// sequence it has seen before.
/// </summary>
public interface IDraftProposer : IDisposable
{
    /// <summary>Proposes up to <paramref name="count"/> tokens continuing <paramref name="sequence"/> (prompt + output).</summary>
    /// <param name="sequence">The prompt and every token accepted so far.</param>
    /// <param name="count">The most tokens to propose (at least 1).</param>
    /// <param name="sampling">The request's sampling: greedy proposes argmaxes, otherwise draws from the processed distribution.</param>
    /// <param name="generator">The request's CPU generator, for draws.</param>
    /// <param name="vocabularySize">How many leading ids are candidates (the target's, which q must match).</param>
    DraftProposal Propose(IReadOnlyList<int> sequence, int count, SamplingOptions sampling, Generator generator, int vocabularySize);
}
