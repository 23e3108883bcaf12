using TorchSharp;

namespace Loom.Data.FeatureConverters;

/// <summary>
/// Turns tokenised examples into fixed-length rows for a decoder-only language model, as seqio's
/// <c>DecoderFeatureConverter</c>: with packing, several examples share a row and are kept apart by
/// segment ids and per-segment positions; without, each example has a padded row of its own.
/// </summary>
/// <remarks>
/// <para>
/// Conventions (mirroring seqio): <c>Targets</c> are the example's tokens (which should already end with
/// EOS); <c>Tokens</c> (decoder inputs) are the targets shifted right by one <em>within each segment</em>,
/// with <see cref="PackingOptions.StartId"/> (0 by default, T5's pad-as-BOS) at each segment's
/// first position, so no segment ever sees another's last token. Hence <c>Targets[t] == Tokens[t + 1]</c>
/// whenever t and t + 1 lie in the same segment.
/// </para>
/// <para>
/// Packing is greedy next-fit in input order, like seqio's non-custom-op packer: an example goes into
/// the current row if it fits in the space left, else the row is closed (padded) and a new one begun. An
/// example never crosses rows; one longer than L is first truncated or split, as
/// <see cref="DecoderFeatureOptions.LongExamples"/> says. Empty examples are skipped.
/// </para>
/// </remarks>
public sealed class DecoderFeatureConverter
{
    /// <summary>Creates a converter.</summary>
    /// <param name="options">The settings.</param>
    public DecoderFeatureConverter(DecoderFeatureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
    }

    /// <summary>The settings.</summary>
    public DecoderFeatureOptions Options { get; }

    /// <summary>Converts examples into rows.</summary>
    /// <param name="examples">Token arrays, each normally ending with EOS; ids must be non-negative.</param>
    /// <returns>The rows, in input order, and their statistics.</returns>
    /// <exception cref="ArgumentException">An example holds a negative id.</exception>
    public (IReadOnlyList<DecoderRow> Rows, PackingStats Stats) Convert(IEnumerable<int[]> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int length = Options.SequenceLength;
        var packer = new NextFitPacker<DecoderRowBuilder>(Options.Pack, () => new DecoderRowBuilder(length, Options.StartId, Options.PadId));
        int exampleCount = 0, segments = 0, skipped = 0, longCount = 0;
        long dropped = 0, nonPadding = 0;
        int index = 0;
        foreach (var example in examples)
        {
            ArgumentNullException.ThrowIfNull(example, $"examples[{index}]");
            FeatureRows.RequireNonNegative(example, "the tokens", index, nameof(examples));
            index++;
            if (example.Length == 0) { skipped++; continue; }
            exampleCount++;
            if (example.Length > length)
            {
                longCount++;
                if (Options.LongExamples == LongExampleHandling.Truncate) dropped += example.Length - length;
            }
            foreach (var piece in Pieces(example))
            {
                segments++;
                nonPadding += piece.Count;
                var (row, segmentId) = packer.Place(r => r.Free >= piece.Count);
                row.Add(piece, segmentId);
            }
        }
        var rows = packer.Rows.Select(r => r.ToDecoderRow()).ToList();
        var stats = new PackingStats(rows.Count, exampleCount, segments, skipped, longCount, dropped, nonPadding, (long)rows.Count * length);
        return (rows, stats);
    }

    /// <summary>
    /// Stacks rows into int64 tensors of shape (B, L) on the CPU. The tensors are moved to the caller's
    /// dispose scope (or left to the caller to dispose where there is none).
    /// </summary>
    /// <param name="rows">The rows, all of the same length.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ArgumentException">There are no rows, or their lengths differ.</exception>
    public static DecoderBatch ToTensors(IReadOnlyList<DecoderRow> rows)
    {
        int length = FeatureRows.RequireSameLength(rows, nameof(rows), r => r.Tokens, r => r.Targets, r => r.SegmentIds, r => r.Positions, r => r.LossWeights);
        using var scope = torch.NewDisposeScope();
        var tokens = FeatureRows.Stack(rows, r => r.Tokens, length);          // (B, L)
        var targets = FeatureRows.Stack(rows, r => r.Targets, length);        // (B, L)
        var segmentIds = FeatureRows.Stack(rows, r => r.SegmentIds, length);  // (B, L)
        var positions = FeatureRows.Stack(rows, r => r.Positions, length);    // (B, L)
        var lossWeights = FeatureRows.Stack(rows, r => r.LossWeights, length); // (B, L)
        return new DecoderBatch(
            tokens.MoveToOuterDisposeScope(), targets.MoveToOuterDisposeScope(), segmentIds.MoveToOuterDisposeScope(),
            positions.MoveToOuterDisposeScope(), lossWeights.MoveToOuterDisposeScope());
    }

    private IEnumerable<ArraySegment<int>> Pieces(int[] example)
    {
        int length = Options.SequenceLength;
        if (example.Length <= length || Options.LongExamples == LongExampleHandling.Truncate)
        {
            yield return new ArraySegment<int>(example, 0, Math.Min(example.Length, length));
            yield break;
        }
        for (int start = 0; start < example.Length; start += length)
            yield return new ArraySegment<int>(example, start, Math.Min(length, example.Length - start));
    }
}

/// <summary>A batch of decoder features, each an int64 tensor of shape (B, L). Disposing it disposes the tensors.</summary>
/// <param name="Tokens">Decoder inputs.</param>
/// <param name="Targets">Decoder targets.</param>
/// <param name="SegmentIds">Segment ids, 0 in padding.</param>
/// <param name="Positions">Positions within segments.</param>
/// <param name="LossWeights">1 at real targets, 0 in padding.</param>
public sealed record DecoderBatch(torch.Tensor Tokens, torch.Tensor Targets, torch.Tensor SegmentIds, torch.Tensor Positions, torch.Tensor LossWeights)
    : IDisposable
{
    /// <summary>Disposes the five tensors.</summary>
    public void Dispose()
    {
        Tokens.Dispose();
        Targets.Dispose();
        SegmentIds.Dispose();
        Positions.Dispose();
        LossWeights.Dispose();
    }
}
