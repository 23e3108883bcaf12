namespace Loom.Inference.Engine;

/// <summary>One row of a step: a sequence computes its tokens [<paramref name="Start"/>, <paramref name="Start"/> + <paramref name="Count"/>).</summary>
/// <param name="Sequence">The sequence; the row's tokens are already appended to its block table.</param>
/// <param name="Start">Position of the first token to compute (tokens before it are cached).</param>
/// <param name="Count">Tokens to compute: 1 when decoding, a prompt chunk when prefilling.</param>
public readonly record struct ScheduledRow(EngineSequence Sequence, int Start, int Count)
{
    /// <summary>Whether the row reaches the end of what its sequence knows, so that a next token is sampled after it.</summary>
    public bool SamplesNext => Start + Count == Sequence.Tokens.Count;
}

/// <summary>
/// What <see cref="Scheduler.Schedule"/> hands the <see cref="ModelRunner"/>: the step's rows, in order (decodes first, then
/// prompt chunks, then newly admitted sequences), at most the token budget in all.
/// </summary>
/// <param name="Rows">The rows; empty when nothing could be scheduled (every running sequence is stuck for lack of blocks).</param>
public sealed record SchedulerOutput(IReadOnlyList<ScheduledRow> Rows)
{
    /// <summary>Tokens the step computes.</summary>
    public int TokenCount => Rows.Sum(r => r.Count);
}

/// <summary>A token sampled after a row of the step.</summary>
/// <param name="Row">The row's index in <see cref="SchedulerOutput.Rows"/>.</param>
/// <param name="Token">The sampled token id.</param>
/// <param name="LogProb">Its log-probability and alternatives, when the request asked for them.</param>
public readonly record struct SampledToken(int Row, int Token, TokenLogProb? LogProb);

/// <summary>What <see cref="ModelRunner.Execute"/> returns: one sampled token per row that <see cref="ScheduledRow.SamplesNext"/>, in row order.</summary>
/// <param name="Samples">The sampled tokens.</param>
public sealed record ModelRunnerOutput(IReadOnlyList<SampledToken> Samples);
