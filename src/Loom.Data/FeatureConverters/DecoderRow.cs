namespace Loom.Data.FeatureConverters;

/// <summary>
/// One row of decoder features, each array of length L (seqio's <c>decoder_*</c> features). Position t
/// of segment s predicts <c>Targets[t]</c> from <c>Tokens[..t]</c> of the same segment.
/// </summary>
/// <param name="Tokens">Decoder inputs: each segment's targets shifted right by one, with the start id at the segment's first position; pad id in padding.</param>
/// <param name="Targets">Decoder targets: the example tokens; pad id in padding.</param>
/// <param name="SegmentIds">1, 2, 3, ... for the row's first, second, third segment; 0 in padding.</param>
/// <param name="Positions">The index within the segment, from 0 at each segment's start; 0 in padding.</param>
/// <param name="LossWeights">1 at real target tokens, 0 in padding.</param>
public sealed record DecoderRow(int[] Tokens, int[] Targets, int[] SegmentIds, int[] Positions, int[] LossWeights)
{
    /// <summary>The number of segments (examples or pieces of examples) in the row.</summary>
    public int SegmentCount => FeatureRows.SegmentCount(SegmentIds);
}

/// <summary>How well examples filled the rows.</summary>
/// <param name="Rows">Rows made.</param>
/// <param name="Examples">Non-empty examples read.</param>
/// <param name="Segments">Segments placed: equal to <paramref name="Examples"/> unless long examples were split.</param>
/// <param name="SkippedExamples">Empty examples, which were skipped.</param>
/// <param name="LongExamples">Examples longer than L (truncated or split).</param>
/// <param name="DroppedTokens">Tokens lost to truncation.</param>
/// <param name="NonPaddingTokens">Positions that hold a real target token.</param>
/// <param name="TotalTokens">All positions: <c>Rows * L</c>.</param>
public sealed record PackingStats(
    int Rows, int Examples, int Segments, int SkippedExamples, int LongExamples, long DroppedTokens, long NonPaddingTokens, long TotalTokens)
{
    /// <summary>Packing efficiency: non-padding tokens over all tokens, in [0, 1]; 0 when there are no rows.</summary>
    public double Efficiency => TotalTokens == 0 ? 0 : (double)NonPaddingTokens / TotalTokens;
}
