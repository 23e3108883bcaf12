using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Causal self-attention with <see cref="DecoderLmOptions.NumKvHeads"/> key/value heads shared by
/// groups of query heads (1 = multi-query, NumHeads = multi-head), rotary or no position encoding,
/// through scaled_dot_product_attention.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Dense wq; // (H·Dh, D)
    private readonly Dense wk; // (Hkv·Dh, D)
    private readonly Dense wv; // (Hkv·Dh, D)
    private readonly Dense wo; // (D, H·Dh)
    private readonly int heads, kvHeads, headDim;
    private readonly Rotary? rotary;

    /// <summary>Creates the layer; <paramref name="rotary"/> is shared by all layers (null for learned positions); initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public Attention(DecoderLmOptions o, Rotary? rotary, Device? device = null, Generator? generator = null) : base(nameof(Attention))
    {
        heads = o.NumHeads;
        kvHeads = o.NumKvHeads;
        headDim = o.HeadDim;
        wq = new Dense(o.ModelDim, heads * headDim, o.UseBias, device, generator);
        wk = new Dense(o.ModelDim, kvHeads * headDim, o.UseBias, device, generator);
        wv = new Dense(o.ModelDim, kvHeads * headDim, o.UseBias, device, generator);
        wo = new Dense(heads * headDim, o.ModelDim, o.UseBias, device, generator);
        RegisterComponents();
        this.rotary = rotary; // not a component of this layer: registered once by the model
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null, 0);

    /// <summary>
    /// Attends from <paramref name="x"/>, (B, T, D), at positions start..start+T-1. With a cache, the
    /// new keys and values are written to it and the queries attend to everything cached. With a
    /// <paramref name="context"/>, each token's position (for the rotary angles) and the keys, values
    /// and mask it attends with come from it: a <see cref="PackedLayout"/> lets a token see only
    /// earlier tokens of its own example; an engine's paged cache, its own sequence's cached prefix.
    /// </summary>
    public Tensor Forward(Tensor x, KvCache? cache, int layer, IAttentionContext? context = null)
    {
        long b = x.shape[0], t = x.shape[1];
        int start = cache?.Length ?? 0;
        var q = wq.forward(x).view(b, t, heads, headDim).transpose(1, 2);   // (B, H, T, Dh)
        var k = wk.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2); // (B, Hkv, T, Dh)
        var v = wv.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2); // (B, Hkv, T, Dh)
        if (rotary is not null)
        {
            q = context is null ? rotary.Apply(q, start) : rotary.Apply(q, context.Positions);
            k = context is null ? rotary.Apply(k, start) : rotary.Apply(k, context.Positions);
        }
        Tensor? mask = null;
        if (cache is not null) (k, v) = cache.Write(layer, k, v);          // (B, Hkv, S, Dh), S = start + T
        else if (context is not null) (k, v, mask) = context.Attend(layer, k, v); // (B, Hkv, S, Dh), mask (B, 1, T, S)
        k = ExpandKvHeads(k, heads);                                       // (B, H, S, Dh)
        v = ExpandKvHeads(v, heads);                                       // (B, H, S, Dh)

        Tensor y;
        if (mask is not null)
            y = nn.functional.scaled_dot_product_attention(q, k, v, mask);  // mask (B, 1, T, S)
        else if (start == 0)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        else if (t == 1)
            y = nn.functional.scaled_dot_product_attention(q, k, v);        // one new token sees every cached one
        else
            y = nn.functional.scaled_dot_product_attention(q, k, v, CausalMask(t, start, x.device));
        return wo.forward(y.transpose(1, 2).reshape(b, t, heads * headDim)); // (B, T, D)
    }

    /// <summary>Repeats each of Hkv heads H/Hkv times along dim 1: (B, Hkv, S, Dh) -> (B, H, S, Dh).</summary>
    public static Tensor ExpandKvHeads(Tensor kv, int heads)
    {
        long kvHeads = kv.shape[1];
        return kvHeads == heads ? kv : kv.repeat_interleave(heads / kvHeads, dim: 1);
    }

    /// <summary>Boolean mask, (T, start+T): query i (at position start+i) may see key j when j ≤ start+i.</summary>
    public static Tensor CausalMask(long t, long start, Device device)
    {
        var rows = arange(t, device: device).unsqueeze(1) + start; // (T, 1)
        var cols = arange(start + t, device: device).unsqueeze(0); // (1, S)
        return cols <= rows;                                        // (T, S)
    }

    /// <summary>
    /// Reference attention written out from the definition softmax(QKᵀ/√d + mask) V, for tests that
    /// check the fused path. q (B, H, T, Dh); k, v (B, H, S, Dh); queries at positions S-T..S-1.
    /// </summary>
    public static Tensor Reference(Tensor q, Tensor k, Tensor v)
    {
        long t = q.shape[2], s = k.shape[2];
        var scores = q.matmul(k.transpose(-2, -1)) / Math.Sqrt(q.shape[^1]);      // (B, H, T, S)
        var allowed = CausalMask(t, s - t, q.device);                             // (T, S)
        scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1).matmul(v);                                      // (B, H, T, Dh)
    }
}
