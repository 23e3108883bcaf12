using Loom.Data;
using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// The encoder's attention context: every token sees every token of its own row (unpacked) or of its
/// own segment (packed rows, segment ids nonzero; padding sees only itself), at positions from the
/// batch's <c>encoder_positions</c> or 0..S-1.
/// </summary>
internal sealed class EncoderContext : IAttentionContext
{
    private readonly Tensor? mask;         // (B, 1, S, S) bool, packed rows only
    private readonly Tensor? keyPositions; // (B, S), packed rows only

    /// <summary>A context for <paramref name="tokens"/>, (B, S), with optional segment ids and positions, (B, S) each.</summary>
    public EncoderContext(Tensor tokens, Tensor? segmentIds, Tensor? positions)
    {
        if (segmentIds is not null && positions is null)
            throw new ArgumentException($"packed encoder rows need \"{FeatureNames.EncoderPositions}\" beside their segment ids");
        if ((segmentIds is not null && !segmentIds.shape.SequenceEqual(tokens.shape)) || (positions is not null && !positions.shape.SequenceEqual(tokens.shape)))
            throw new ArgumentException($"encoder segment ids and positions must have the encoder inputs' shape [{string.Join(", ", tokens.shape)}]");
        long b = tokens.shape[0], s = tokens.shape[1];
        Positions = positions ?? arange(s, dtype: int64, device: tokens.device).unsqueeze(0).expand(b, s); // (B, S)
        keyPositions = positions;
        if (segmentIds is not null) mask = PackedLayout.SegmentMask(segmentIds, causal: false); // (B, 1, S, S)
    }

    /// <inheritdoc />
    public Tensor Positions { get; }

    /// <inheritdoc />
    public AttentionInputs Attend(int layer, Tensor keys, Tensor values) => new(keys, values, mask, IsCausal: false, KeyPositions: keyPositions);
}

/// <summary>
/// The decoder's context in a full forward over a batch (training, scoring): self-attention through the
/// decoder's <see cref="PackedLayout"/> (packed rows) or causal from position 0 (unpacked rows), and
/// cross-attention to the memory computed from the same batch with a mask that keeps each decoder
/// segment on its own encoder segment. Inference reaches the same decoder code through a
/// <see cref="KvCache"/> step instead.
/// </summary>
internal sealed class DecoderContext : IAttentionContext
{
    private readonly PackedLayout? packed;
    private readonly EncoderMemory memory;
    private readonly Tensor crossMask; // (B, 1, 1 or T, S) bool

    /// <summary>A context for <paramref name="t"/> decoder tokens per row over <paramref name="memory"/>.</summary>
    public DecoderContext(PackedLayout? packed, EncoderMemory memory, Tensor crossMask, long t)
    {
        this.packed = packed;
        this.memory = memory;
        this.crossMask = crossMask;
        long b = memory.Valid.shape[0];
        Positions = packed?.Positions ?? arange(t, dtype: int64, device: crossMask.device).unsqueeze(0).expand(b, t); // (B, T)
    }

    /// <inheritdoc />
    public Tensor Positions { get; }

    /// <inheritdoc />
    public AttentionInputs Attend(int layer, Tensor keys, Tensor values) =>
        packed?.Attend(layer, keys, values) ?? new AttentionInputs(keys, values, null, IsCausal: true);

    /// <inheritdoc />
    public AttentionInputs CrossAttend(int layer)
    {
        var (k, v) = memory.Layers[layer];         // (B, H, S, Dh)
        return new AttentionInputs(k, v, crossMask); // mask (B, 1, 1 or T, S)
    }

    /// <summary>
    /// True where decoder token i may see encoder token j: both in the same non-padding segment (packed
    /// rows: t5x's <c>make_attention_mask(decoder_segment_ids, encoder_segment_ids, jnp.equal)</c>), (B, 1, T, S).
    /// </summary>
    public static Tensor SegmentCrossMask(Tensor decoderSegmentIds, Tensor encoderSegmentIds)
    {
        var same = decoderSegmentIds.unsqueeze(2).eq(encoderSegmentIds.unsqueeze(1)); // (B, T, S)
        return (same & decoderSegmentIds.ne(0).unsqueeze(2)).unsqueeze(1);             // (B, 1, T, S)
    }
}
