using TorchSharp;

namespace Loom.Data.FeatureConverters;

/// <summary>
/// Turns (inputs, targets) examples into fixed-length rows for an encoder-decoder model, as seqio's
/// <c>EncDecFeatureConverter</c>: the inputs feed the encoder, the targets the decoder (shifted right
/// within each segment, as in <see cref="DecoderFeatureConverter"/>), each side with its own length.
/// </summary>
/// <remarks>
/// With packing an example joins the current row only if its inputs fit in the encoder's free space
/// and its targets in the decoder's (seqio's packer checks every feature); otherwise a new row is
/// begun. Segment k of the encoder and segment k of the decoder are the same example, so a model can
/// restrict cross-attention to equal segment ids. Each side longer than its length is truncated, as
/// seqio trims it. An example whose inputs and targets are both empty is skipped; one empty side is
/// kept (its segment id then appears on the other side only).
/// </remarks>
public sealed class EncoderDecoderFeatureConverter
{
    /// <summary>Creates a converter.</summary>
    /// <param name="options">The settings.</param>
    public EncoderDecoderFeatureConverter(EncoderDecoderFeatureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
    }

    /// <summary>The settings.</summary>
    public EncoderDecoderFeatureOptions Options { get; }

    /// <summary>Converts examples into rows.</summary>
    /// <param name="examples">Inputs and targets of each example, normally each ending with EOS; ids must be non-negative.</param>
    /// <returns>The rows, in input order, and the statistics of each side.</returns>
    /// <exception cref="ArgumentException">An example holds a negative id.</exception>
    public (IReadOnlyList<EncoderDecoderRow> Rows, EncoderDecoderPackingStats Stats) Convert(IEnumerable<(int[] Inputs, int[] Targets)> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int inputsLength = Options.InputsLength, targetsLength = Options.TargetsLength;
        var packer = new NextFitPacker<RowBuilder>(Options.Pack, () => new RowBuilder(
            new EncoderRowBuilder(inputsLength, Options.PadId), new DecoderRowBuilder(targetsLength, Options.StartId, Options.PadId)));
        var encoder = new SideCounts();
        var decoder = new SideCounts();
        int exampleCount = 0, skipped = 0;
        int index = 0;
        foreach (var (inputs, targets) in examples)
        {
            ArgumentNullException.ThrowIfNull(inputs, $"examples[{index}].Inputs");
            ArgumentNullException.ThrowIfNull(targets, $"examples[{index}].Targets");
            FeatureRows.RequireNonNegative(inputs, "the inputs", index, nameof(examples));
            FeatureRows.RequireNonNegative(targets, "the targets", index, nameof(examples));
            index++;
            if (inputs.Length + targets.Length == 0) { skipped++; continue; }
            exampleCount++;
            int inputsUsed = encoder.Count(inputs.Length, inputsLength);
            int targetsUsed = decoder.Count(targets.Length, targetsLength);
            var (row, segmentId) = packer.Place(r => r.Encoder.Free >= inputsUsed && r.Decoder.Free >= targetsUsed);
            row.Encoder.Add(inputs.AsSpan(0, inputsUsed), segmentId);
            row.Decoder.Add(targets.AsSpan(0, targetsUsed), segmentId);
        }
        var rows = packer.Rows.Select(r => new EncoderDecoderRow(r.Encoder.ToEncoderRow(), r.Decoder.ToDecoderRow())).ToList();
        var stats = new EncoderDecoderPackingStats(
            encoder.ToStats(rows.Count, exampleCount, skipped, inputsLength),
            decoder.ToStats(rows.Count, exampleCount, skipped, targetsLength));
        return (rows, stats);
    }

    /// <summary>
    /// Stacks rows into int64 tensors on the CPU: encoder features (B, inputs length), decoder features
    /// (B, targets length). The tensors are moved to the caller's dispose scope (or left to the caller
    /// to dispose where there is none).
    /// </summary>
    /// <param name="rows">The rows, all with the same encoder length and the same decoder length.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ArgumentException">There are no rows, or their lengths differ.</exception>
    public static EncoderDecoderBatch ToTensors(IReadOnlyList<EncoderDecoderRow> rows)
    {
        int encoderLength = FeatureRows.RequireSameLength(rows, nameof(rows),
            r => r.Encoder.Tokens, r => r.Encoder.SegmentIds, r => r.Encoder.Positions);
        int decoderLength = FeatureRows.RequireSameLength(rows, nameof(rows),
            r => r.Decoder.Tokens, r => r.Decoder.Targets, r => r.Decoder.SegmentIds, r => r.Decoder.Positions, r => r.Decoder.LossWeights);
        using var scope = torch.NewDisposeScope();
        var encoderTokens = FeatureRows.Stack(rows, r => r.Encoder.Tokens, encoderLength);         // (B, Le)
        var encoderSegmentIds = FeatureRows.Stack(rows, r => r.Encoder.SegmentIds, encoderLength); // (B, Le)
        var encoderPositions = FeatureRows.Stack(rows, r => r.Encoder.Positions, encoderLength);   // (B, Le)
        var decoderTokens = FeatureRows.Stack(rows, r => r.Decoder.Tokens, decoderLength);         // (B, Ld)
        var decoderTargets = FeatureRows.Stack(rows, r => r.Decoder.Targets, decoderLength);       // (B, Ld)
        var decoderSegmentIds = FeatureRows.Stack(rows, r => r.Decoder.SegmentIds, decoderLength); // (B, Ld)
        var decoderPositions = FeatureRows.Stack(rows, r => r.Decoder.Positions, decoderLength);   // (B, Ld)
        var decoderLossWeights = FeatureRows.Stack(rows, r => r.Decoder.LossWeights, decoderLength); // (B, Ld)
        return new EncoderDecoderBatch(
            encoderTokens.MoveToOuterDisposeScope(), encoderSegmentIds.MoveToOuterDisposeScope(), encoderPositions.MoveToOuterDisposeScope(),
            decoderTokens.MoveToOuterDisposeScope(), decoderTargets.MoveToOuterDisposeScope(), decoderSegmentIds.MoveToOuterDisposeScope(),
            decoderPositions.MoveToOuterDisposeScope(), decoderLossWeights.MoveToOuterDisposeScope());
    }

    private sealed record RowBuilder(EncoderRowBuilder Encoder, DecoderRowBuilder Decoder);

    /// <summary>The statistics of one side, accumulated example by example.</summary>
    private sealed class SideCounts
    {
        private int _segments, _long;
        private long _dropped, _nonPadding;

        /// <summary>Counts a side of <paramref name="count"/> tokens; returns how many of them fit in <paramref name="length"/>.</summary>
        public int Count(int count, int length)
        {
            int used = Math.Min(count, length);
            if (count > 0) _segments++;
            if (count > length)
            {
                _long++;
                _dropped += count - length;
            }
            _nonPadding += used;
            return used;
        }

        public PackingStats ToStats(int rows, int examples, int skipped, int length) =>
            new(rows, examples, _segments, skipped, _long, _dropped, _nonPadding, (long)rows * length);
    }
}

/// <summary>
/// One row of encoder features, each array of the encoder length (seqio's <c>encoder_*</c> features).
/// </summary>
/// <param name="Tokens">Encoder inputs: the examples' inputs one after another; pad id in padding.</param>
/// <param name="SegmentIds">1, 2, 3, ... for the row's first, second, third example; 0 in padding.</param>
/// <param name="Positions">The index within the segment, from 0 at each segment's start; 0 in padding.</param>
public sealed record EncoderRow(int[] Tokens, int[] SegmentIds, int[] Positions)
{
    /// <summary>The number of non-empty segments in the row.</summary>
    public int SegmentCount => FeatureRows.SegmentCount(SegmentIds);
}

/// <summary>One row of an encoder-decoder batch: segment k of <see cref="Encoder"/> and of <see cref="Decoder"/> is the same example.</summary>
/// <param name="Encoder">The encoder features (length: the inputs length).</param>
/// <param name="Decoder">The decoder features (length: the targets length); loss weight 1 on every target token.</param>
public sealed record EncoderDecoderRow(EncoderRow Encoder, DecoderRow Decoder)
{
    /// <summary>The number of examples in the row.</summary>
    public int SegmentCount => Math.Max(Encoder.SegmentCount, Decoder.SegmentCount);
}

/// <summary>How well examples filled each side of the rows.</summary>
/// <param name="Encoder">
/// Encoder side: <see cref="PackingStats.Segments"/> counts non-empty inputs, <see cref="PackingStats.LongExamples"/>
/// and <see cref="PackingStats.DroppedTokens"/> the inputs truncated; totals are rows times the inputs length.
/// </param>
/// <param name="Decoder">Decoder side, likewise for the targets.</param>
public sealed record EncoderDecoderPackingStats(PackingStats Encoder, PackingStats Decoder);

/// <summary>
/// A batch of encoder-decoder features, int64 tensors of shape (B, Le) for the encoder and (B, Ld) for the
/// decoder. Disposing it disposes the tensors.
/// </summary>
/// <param name="EncoderTokens">Encoder inputs, (B, Le).</param>
/// <param name="EncoderSegmentIds">Encoder segment ids, 0 in padding, (B, Le).</param>
/// <param name="EncoderPositions">Encoder positions within segments, (B, Le).</param>
/// <param name="DecoderTokens">Decoder inputs, (B, Ld).</param>
/// <param name="DecoderTargets">Decoder targets, (B, Ld).</param>
/// <param name="DecoderSegmentIds">Decoder segment ids, 0 in padding, (B, Ld).</param>
/// <param name="DecoderPositions">Decoder positions within segments, (B, Ld).</param>
/// <param name="DecoderLossWeights">1 at real targets, 0 in padding, (B, Ld).</param>
public sealed record EncoderDecoderBatch(
    torch.Tensor EncoderTokens, torch.Tensor EncoderSegmentIds, torch.Tensor EncoderPositions,
    torch.Tensor DecoderTokens, torch.Tensor DecoderTargets, torch.Tensor DecoderSegmentIds, torch.Tensor DecoderPositions, torch.Tensor DecoderLossWeights)
    : IDisposable
{
    /// <summary>The same tensors under their model feature names (<see cref="FeatureNames"/>); the returned batch owns them.</summary>
    public FeatureBatch ToFeatures() => new(new Dictionary<string, torch.Tensor>
    {
        [FeatureNames.EncoderInputTokens] = EncoderTokens,
        [FeatureNames.EncoderSegmentIds] = EncoderSegmentIds,
        [FeatureNames.EncoderPositions] = EncoderPositions,
        [FeatureNames.DecoderInputTokens] = DecoderTokens,
        [FeatureNames.DecoderTargetTokens] = DecoderTargets,
        [FeatureNames.DecoderSegmentIds] = DecoderSegmentIds,
        [FeatureNames.DecoderPositions] = DecoderPositions,
        [FeatureNames.DecoderLossWeights] = DecoderLossWeights,
    });

    /// <summary>Disposes the eight tensors.</summary>
    public void Dispose()
    {
        EncoderTokens.Dispose();
        EncoderSegmentIds.Dispose();
        EncoderPositions.Dispose();
        DecoderTokens.Dispose();
        DecoderTargets.Dispose();
        DecoderSegmentIds.Dispose();
        DecoderPositions.Dispose();
        DecoderLossWeights.Dispose();
    }
}
