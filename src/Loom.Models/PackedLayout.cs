using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// How examples are packed into rows (seqio's packing): each token's segment (example number within
/// its row, 0 for padding) and position within its example. A packed example attends only to earlier
/// tokens of its own segment and its positions restart at 0, so it is scored exactly as if alone.
/// With a bidirectional prefix (prefix-LM, seqio's <c>decoder_causal_attention</c>) the prefix
/// positions of a segment also attend to one another in both directions.
/// </summary>
public sealed class PackedLayout : IAttentionContext
{
    /// <summary>Builds the layout from segment ids and positions, both (B, T) int64.</summary>
    /// <param name="segmentIds">Segment of each token, (B, T); 0 marks padding.</param>
    /// <param name="positions">Position of each token within its segment, (B, T).</param>
    /// <param name="causalAttention">
    /// Optional (B, T) prefix marks, nonzero where a token belongs to its segment's bidirectional prefix
    /// (seqio's <c>decoder_causal_attention</c>); null gives a plain causal mask.
    /// </param>
    /// <exception cref="ArgumentException">The tensors are not all (B, T) of the same shape.</exception>
    public PackedLayout(Tensor segmentIds, Tensor positions, Tensor? causalAttention = null)
    {
        ArgumentNullException.ThrowIfNull(segmentIds);
        ArgumentNullException.ThrowIfNull(positions);
        if (!segmentIds.shape.SequenceEqual(positions.shape) || segmentIds.dim() != 2)
            throw new ArgumentException($"segment ids [{string.Join(", ", segmentIds.shape)}] and positions [{string.Join(", ", positions.shape)}] must both be (B, T)");
        if (causalAttention is not null && !causalAttention.shape.SequenceEqual(segmentIds.shape))
            throw new ArgumentException($"causal attention [{string.Join(", ", causalAttention.shape)}] must have the segment ids' shape [{string.Join(", ", segmentIds.shape)}]");
        Positions = positions;
        Mask = SegmentCausalMask(segmentIds, causalAttention);
    }

    /// <summary>Position of each token within its example, (B, T).</summary>
    public Tensor Positions { get; }

    /// <inheritdoc />
    /// <remarks>A row's keys are its own tokens: nothing is stored, and the mask keeps examples apart.</remarks>
    public AttentionInputs Attend(int layer, Tensor keys, Tensor values) => new(keys, values, Mask, KeyPositions: Positions);

    /// <summary>Attention mask, (B, 1, T, T): true where query i may attend key j.</summary>
    public Tensor Mask { get; }

    /// <summary>
    /// True where tokens i and j belong to the same non-padding segment and either j ≤ i or both lie in
    /// the segment's bidirectional prefix (<paramref name="causalAttention"/> nonzero at i and j), plus
    /// the diagonal so that padding rows are never fully masked (their outputs carry no loss weight).
    /// This is t5x's <c>make_decoder_mask</c>: (causal OR prefix_i AND prefix_j) AND same segment.
    /// </summary>
    /// <param name="segmentIds">Segment of each token, (B, T); 0 marks padding.</param>
    /// <param name="causalAttention">Optional (B, T) prefix marks; null: causal within each segment.</param>
    /// <returns>The mask, (B, 1, T, T) bool.</returns>
    public static Tensor SegmentCausalMask(Tensor segmentIds, Tensor? causalAttention = null) => SegmentMask(segmentIds, causal: true, causalAttention);

    /// <summary>
    /// True where tokens i and j belong to the same non-padding segment and, when <paramref name="causal"/>,
    /// j ≤ i or both lie in the segment's bidirectional prefix; plus the diagonal, so that padding rows are
    /// never fully masked. Not causal, it is t5x's encoder mask,
    /// <c>make_attention_mask(segment_ids, segment_ids, jnp.equal)</c> restricted to real tokens.
    /// </summary>
    /// <param name="segmentIds">Segment of each token, (B, T); 0 marks padding.</param>
    /// <param name="causal">Whether a token sees only earlier tokens of its segment (decoder) or all of them (encoder).</param>
    /// <param name="causalAttention">Optional (B, T) prefix marks, used only when <paramref name="causal"/>.</param>
    /// <returns>The mask, (B, 1, T, T) bool.</returns>
    public static Tensor SegmentMask(Tensor segmentIds, bool causal, Tensor? causalAttention = null)
    {
        ArgumentNullException.ThrowIfNull(segmentIds);
        long t = segmentIds.shape[1];
        var same = segmentIds.unsqueeze(2).eq(segmentIds.unsqueeze(1)) & segmentIds.ne(0).unsqueeze(2); // (B, T, T)
        if (causal)
        {
            var allowed = ones(t, t, dtype: @bool, device: segmentIds.device).tril();                 // (T, T) causal
            if (causalAttention is not null)
            {
                var prefix = causalAttention.ne(0);                                  // (B, T)
                allowed = allowed | (prefix.unsqueeze(2) & prefix.unsqueeze(1));    // (B, T, T)
            }
            same = same & allowed;
        }
        var diagonal = eye(t, dtype: @bool, device: segmentIds.device);          // (T, T)
        return (same | diagonal).unsqueeze(1);                                   // (B, 1, T, T)
    }
}
