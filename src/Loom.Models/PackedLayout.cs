using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// How examples are packed into rows (seqio's packing): each token's segment (example number within
/// its row, 0 for padding) and position within its example. A packed example attends only to earlier
/// tokens of its own segment and its positions restart at 0, so it is scored exactly as if alone.
/// </summary>
public sealed class PackedLayout
{
    /// <summary>Builds the layout from segment ids and positions, both (B, T) int64.</summary>
    public PackedLayout(Tensor segmentIds, Tensor positions)
    {
        ArgumentNullException.ThrowIfNull(segmentIds);
        ArgumentNullException.ThrowIfNull(positions);
        if (!segmentIds.shape.SequenceEqual(positions.shape) || segmentIds.dim() != 2)
            throw new ArgumentException($"segment ids [{string.Join(", ", segmentIds.shape)}] and positions [{string.Join(", ", positions.shape)}] must both be (B, T)");
        Positions = positions;
        Mask = SegmentCausalMask(segmentIds);
    }

    /// <summary>Position of each token within its example, (B, T).</summary>
    public Tensor Positions { get; }

    /// <summary>Attention mask, (B, 1, T, T): true where query i may attend key j.</summary>
    public Tensor Mask { get; }

    /// <summary>
    /// True where j ≤ i and tokens i and j belong to the same non-padding segment, plus the diagonal
    /// so that padding rows are never fully masked (their outputs carry no loss weight).
    /// </summary>
    public static Tensor SegmentCausalMask(Tensor segmentIds)
    {
        long t = segmentIds.shape[1];
        var same = segmentIds.unsqueeze(2).eq(segmentIds.unsqueeze(1)) & segmentIds.ne(0).unsqueeze(2); // (B, T, T)
        var causal = ones(t, t, dtype: @bool, device: segmentIds.device).tril();                      // (T, T)
        var diagonal = eye(t, dtype: @bool, device: segmentIds.device);                                 // (T, T)
        return ((same & causal) | diagonal).unsqueeze(1);                                               // (B, 1, T, T)
    }
}
