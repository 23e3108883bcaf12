using TorchSharp;

namespace Loom.Data.FeatureConverters;

/// <summary>
/// Turns (inputs, targets) examples into fixed-length rows for a decoder-only prefix language model, as
/// seqio's <c>PrefixLMFeatureConverter</c>: each example becomes one decoder sequence
/// <c>inputs ++ targets</c> whose inputs part is attended bidirectionally and whose targets part alone
/// carries the loss.
/// </summary>
/// <remarks>
/// <para>
/// The decoder features are those of <see cref="DecoderFeatureConverter"/> on the concatenation, plus
/// <see cref="PrefixLmRow.CausalAttention"/>. Following seqio (<c>positions &lt; inputs_width_add_pos</c>
/// in <c>PrefixLMFeatureConverter._convert_example</c>), it is 1 on the first <c>len(inputs) + 1</c>
/// positions of each segment: the decoder <em>inputs</em> there are the start id and the example's input
/// tokens, the last of which is read at the position that predicts the first target ("one additional
/// position to the right", after mesh_tensorflow's transformer). No target token is ever a decoder input
/// in that region, so the bidirectional prefix leaks nothing that a position must predict.
/// </para>
/// <para>
/// Loss weights are 1 on the targets part (positions <c>len(inputs)</c> onward) and 0 on the inputs part
/// and padding, unless <see cref="PrefixLmFeatureOptions.LossOnTargetsOnly"/> is false. Packing is the
/// same greedy next-fit as the decoder converter's; a concatenation longer than L is truncated to L, as
/// seqio trims it. An example whose inputs and targets are both empty is skipped; one with inputs but no
/// targets is refused, as seqio refuses it (its targets should at least hold EOS).
/// </para>
/// </remarks>
public sealed class PrefixLmFeatureConverter
{
    /// <summary>Creates a converter.</summary>
    /// <param name="options">The settings.</param>
    public PrefixLmFeatureConverter(PrefixLmFeatureOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
    }

    /// <summary>The settings.</summary>
    public PrefixLmFeatureOptions Options { get; }

    /// <summary>Converts examples into rows.</summary>
    /// <param name="examples">Inputs and targets of each example, normally each ending with EOS; ids must be non-negative.</param>
    /// <returns>
    /// The rows, in input order, and their statistics; <see cref="PackingStats.NonPaddingTokens"/> counts
    /// the positions that hold an input or target token.
    /// </returns>
    /// <exception cref="ArgumentException">An example holds a negative id, or has inputs but no targets.</exception>
    public (IReadOnlyList<PrefixLmRow> Rows, PackingStats Stats) Convert(IEnumerable<(int[] Inputs, int[] Targets)> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int length = Options.SequenceLength;
        var packer = new NextFitPacker<DecoderRowBuilder>(Options.Pack, () => new DecoderRowBuilder(length, Options.StartId, Options.PadId));
        int exampleCount = 0, skipped = 0, longCount = 0;
        long dropped = 0, nonPadding = 0;
        int index = 0;
        foreach (var (inputs, targets) in examples)
        {
            ArgumentNullException.ThrowIfNull(inputs, $"examples[{index}].Inputs");
            ArgumentNullException.ThrowIfNull(targets, $"examples[{index}].Targets");
            FeatureRows.RequireNonNegative(inputs, "the inputs", index, nameof(examples));
            FeatureRows.RequireNonNegative(targets, "the targets", index, nameof(examples));
            if (inputs.Length + targets.Length == 0) { skipped++; index++; continue; }
            if (targets.Length == 0)
                throw new ArgumentException($"example {index} has inputs but no targets; a prefix-LM example's targets should at least hold EOS", nameof(examples));
            index++;
            exampleCount++;

            int[] sequence = [.. inputs, .. targets];
            int used = Math.Min(sequence.Length, length);
            if (sequence.Length > length)
            {
                longCount++;
                dropped += sequence.Length - length;
            }
            nonPadding += used;
            var (row, segmentId) = packer.Place(r => r.Free >= used);
            row.Add(sequence.AsSpan(0, used), segmentId,
                lossStart: Options.LossOnTargetsOnly ? inputs.Length : 0,
                bidirectionalPrefix: inputs.Length + 1); // seqio's inputs_width_add_pos
        }
        var rows = packer.Rows.Select(r => r.ToPrefixLmRow()).ToList();
        var stats = new PackingStats(rows.Count, exampleCount, exampleCount, skipped, longCount, dropped, nonPadding, (long)rows.Count * length);
        return (rows, stats);
    }

    /// <summary>
    /// Stacks rows into int64 tensors of shape (B, L) on the CPU. The tensors are moved to the caller's
    /// dispose scope (or left to the caller to dispose where there is none).
    /// </summary>
    /// <param name="rows">The rows, all of the same length.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ArgumentException">There are no rows, or their lengths differ.</exception>
    public static PrefixLmBatch ToTensors(IReadOnlyList<PrefixLmRow> rows)
    {
        int length = FeatureRows.RequireSameLength(rows, nameof(rows),
            r => r.Tokens, r => r.Targets, r => r.SegmentIds, r => r.Positions, r => r.LossWeights, r => r.CausalAttention);
        using var scope = torch.NewDisposeScope();
        var tokens = FeatureRows.Stack(rows, r => r.Tokens, length);                   // (B, L)
        var targets = FeatureRows.Stack(rows, r => r.Targets, length);                 // (B, L)
        var segmentIds = FeatureRows.Stack(rows, r => r.SegmentIds, length);           // (B, L)
        var positions = FeatureRows.Stack(rows, r => r.Positions, length);             // (B, L)
        var lossWeights = FeatureRows.Stack(rows, r => r.LossWeights, length);         // (B, L)
        var causalAttention = FeatureRows.Stack(rows, r => r.CausalAttention, length); // (B, L)
        return new PrefixLmBatch(
            tokens.MoveToOuterDisposeScope(), targets.MoveToOuterDisposeScope(), segmentIds.MoveToOuterDisposeScope(),
            positions.MoveToOuterDisposeScope(), lossWeights.MoveToOuterDisposeScope(), causalAttention.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// One row of prefix-LM features, each array of length L (seqio's <c>decoder_*</c> features of
/// <c>PrefixLMFeatureConverter</c>).
/// </summary>
/// <param name="Tokens">Decoder inputs: each segment's targets shifted right by one, with the start id at the segment's first position; pad id in padding.</param>
/// <param name="Targets">Decoder targets: the example's inputs followed by its targets; pad id in padding.</param>
/// <param name="SegmentIds">1, 2, 3, ... for the row's first, second, third segment; 0 in padding.</param>
/// <param name="Positions">The index within the segment, from 0 at each segment's start; 0 in padding.</param>
/// <param name="LossWeights">1 on the targets part of each segment (and on its inputs part when loss is not on targets only); 0 in padding.</param>
/// <param name="CausalAttention">1 on the first <c>len(inputs) + 1</c> positions of each segment, which attend to one another bidirectionally; 0 elsewhere.</param>
public sealed record PrefixLmRow(int[] Tokens, int[] Targets, int[] SegmentIds, int[] Positions, int[] LossWeights, int[] CausalAttention)
{
    /// <summary>The number of segments (examples) in the row.</summary>
    public int SegmentCount => FeatureRows.SegmentCount(SegmentIds);
}

/// <summary>A batch of prefix-LM features, each an int64 tensor of shape (B, L). Disposing it disposes the tensors.</summary>
/// <param name="Tokens">Decoder inputs.</param>
/// <param name="Targets">Decoder targets.</param>
/// <param name="SegmentIds">Segment ids, 0 in padding.</param>
/// <param name="Positions">Positions within segments.</param>
/// <param name="LossWeights">1 at targets that count.</param>
/// <param name="CausalAttention">1 on each segment's bidirectional prefix.</param>
public sealed record PrefixLmBatch(
    torch.Tensor Tokens, torch.Tensor Targets, torch.Tensor SegmentIds, torch.Tensor Positions, torch.Tensor LossWeights, torch.Tensor CausalAttention)
    : IDisposable
{
    /// <summary>Disposes the six tensors.</summary>
    public void Dispose()
    {
        Tokens.Dispose();
        Targets.Dispose();
        SegmentIds.Dispose();
        Positions.Dispose();
        LossWeights.Dispose();
        CausalAttention.Dispose();
    }
}
