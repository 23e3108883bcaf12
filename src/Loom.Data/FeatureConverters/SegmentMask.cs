using TorchSharp;

namespace Loom.Data.FeatureConverters;

/// <summary>Attention masks for packed rows, as seqio/t5x's <c>make_attention_mask</c> with segment ids combined with a causal mask.</summary>
public static class SegmentMask
{
    /// <summary>
    /// The causal, segment-restricted attention mask of packed rows: query i may attend key j iff both lie
    /// in the same segment, that segment is not padding (id 0), and j &lt;= i.
    /// </summary>
    /// <remarks>
    /// Padding queries attend nothing, so their rows are all false; a softmax over such a row needs the
    /// caller to guard against NaN (their loss weight is 0 anyway). The mask is made on the segment ids'
    /// device and moved to the caller's dispose scope.
    /// </remarks>
    /// <param name="segmentIds">Integer segment ids of shape (B, L), 0 = padding.</param>
    /// <returns>A boolean tensor of shape (B, 1, L, L): batch, a broadcast head axis, query, key.</returns>
    /// <exception cref="ArgumentException"><paramref name="segmentIds"/> is not two-dimensional or not of an integer type.</exception>
    public static torch.Tensor Causal(torch.Tensor segmentIds)
    {
        ArgumentNullException.ThrowIfNull(segmentIds);
        if (segmentIds.dim() != 2)
            throw new ArgumentException($"segment ids must have shape (B, L), got ({string.Join(", ", segmentIds.shape)})", nameof(segmentIds));
        if (!torch.is_integral(segmentIds.dtype))
            throw new ArgumentException($"segment ids must be integers, got {segmentIds.dtype}", nameof(segmentIds));

        using var scope = torch.NewDisposeScope();
        long length = segmentIds.shape[1];
        var queries = segmentIds.unsqueeze(2);                                      // (B, L, 1)
        var keys = segmentIds.unsqueeze(1);                                         // (B, 1, L)
        var sameSegment = queries.eq(keys).logical_and(queries.ne(0));              // (B, L, L); keys share the query's nonzero id
        var causal = torch.ones(length, length, torch.@bool, segmentIds.device).tril(); // (L, L): key j <= query i
        var mask = sameSegment.logical_and(causal).unsqueeze(1);                   // (B, 1, L, L)
        return mask.MoveToOuterDisposeScope();
    }
}
