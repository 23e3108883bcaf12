using Loom.Models.Kernels;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Causal self-attention with <c>kvHeads</c> key/value heads shared by groups of query heads
/// (1 = multi-query, heads = multi-head), rotary or no position encoding, through
/// scaled_dot_product_attention. Where the keys and values come from, and which each query sees, is the
/// <see cref="IAttentionContext"/>'s business: the layer only projects, rotates and attends.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Dense wq; // (H·Dh, D)
    private readonly Dense wk; // (Hkv·Dh, D)
    private readonly Dense wv; // (Hkv·Dh, D)
    private readonly Dense wo; // (D, H·Dh)
    private readonly int headDim;
    private int heads, kvHeads; // this rank's, once sharded
    private readonly Rotary? rotary;
    private readonly double? scale, softcap;
    private readonly int? blockSize; // blockwise attention's tile size; null: the fused kernel

    /// <summary>
    /// Creates the layer; <paramref name="rotary"/> is shared by all layers (null for learned positions);
    /// initial values come from <paramref name="generator"/> (torch's default when null). Scores are scaled by
    /// <paramref name="scale"/> (null: 1/√head_dim) and, with <paramref name="softcap"/>, capped to cap · tanh(s / cap) (Gemma 2).
    /// With <paramref name="blockSize"/> the scores are computed <see cref="BlockwiseAttention"/>, in tiles of that many queries and keys.
    /// </summary>
    public Attention(int modelDim, int heads, int kvHeads, int headDim, bool useBias, Rotary? rotary, Device? device = null, Generator? generator = null,
        double? scale = null, double? softcap = null, int? blockSize = null)
        : base(nameof(Attention))
    {
        this.blockSize = blockSize;
        this.scale = scale;
        this.softcap = softcap;
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        wq = new Dense(modelDim, heads * headDim, useBias, device, generator, (LogicalAxes.Heads, LogicalAxes.Embed));
        wk = new Dense(modelDim, kvHeads * headDim, useBias, device, generator, (LogicalAxes.KvHeads, LogicalAxes.Embed));
        wv = new Dense(modelDim, kvHeads * headDim, useBias, device, generator, (LogicalAxes.KvHeads, LogicalAxes.Embed));
        wo = new Dense(heads * headDim, modelDim, useBias, device, generator, (LogicalAxes.Embed, LogicalAxes.Heads));
        RegisterComponents();
        this.rotary = rotary; // not a component of this layer: registered once by the model
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, 0, null);

    /// <summary>Query heads this layer computes (all of them, or this rank's after <see cref="Shard"/>).</summary>
    public int Heads => heads;

    /// <summary>Key/value heads this layer computes.</summary>
    public int KvHeads => kvHeads;

    /// <summary>The output projection's bias, (D); null without biases.</summary>
    public Tensor? OutputBias => wo.Bias;

    /// <summary>
    /// Keeps this rank's heads (Megatron-style): query heads <c>[index·H/count, (index+1)·H/count)</c> (the query
    /// kernel's rows, the output kernel's columns), and the key/value heads they read, when
    /// <paramref name="shardKeysAndValues"/>; otherwise every rank keeps all key/value heads (multi-query: one head, replicated).
    /// </summary>
    /// <exception cref="ArgumentException">The heads do not split evenly, or replicated keys and values are not multi-query.</exception>
    public void Shard(int index, int count, bool shardKeysAndValues)
    {
        if (heads % count != 0) throw new ArgumentException($"{heads} attention heads do not split over {count} ranks", nameof(count));
        if (shardKeysAndValues ? kvHeads % count != 0 : kvHeads != 1)
            throw new ArgumentException(shardKeysAndValues ? $"{kvHeads} key/value heads do not split over {count} ranks" : $"only multi-query keys and values (1 head) are replicated, not {kvHeads}", nameof(shardKeysAndValues));
        wq.Shard(0, index, count);
        wo.Shard(1, index, count);
        if (shardKeysAndValues)
        {
            wk.Shard(0, index, count);
            wv.Shard(0, index, count);
            kvHeads /= count;
        }
        heads /= count;
    }

    /// <summary>
    /// Attends from <paramref name="x"/>, (B, T, D). Without a context the rows are causal sequences from
    /// position 0. With one, each token's position (for the rotary angles) and the keys, values and mask
    /// it attends with come from it: a <see cref="PackedLayout"/> lets a token see only earlier tokens of
    /// its own example; a <see cref="KvCache"/> step or an engine's paged cache, its own sequence's cached prefix.
    /// </summary>
    public Tensor Forward(Tensor x, int layer, IAttentionContext? context) => Forward(x, layer, context, addOutputBias: true);

    /// <summary>
    /// As <see cref="Forward(Tensor, int, IAttentionContext?)"/>; without <paramref name="addOutputBias"/> the output
    /// projection's bias is left out (a sharded layer's outputs are partial sums: the bias is added once, after them).
    /// </summary>
    public Tensor Forward(Tensor x, int layer, IAttentionContext? context, bool addOutputBias)
    {
        long b = x.size(0), t = x.size(1); // size(i): the shape property costs ~1.5 µs a call
        var q = SplitHeads(wq.forward(x), b, t, heads);   // (B, H, T, Dh)
        var k = SplitHeads(wk.forward(x), b, t, kvHeads); // (B, Hkv, T, Dh)
        var v = SplitHeads(wv.forward(x), b, t, kvHeads); // (B, Hkv, T, Dh)
        if (rotary is not null)
        {
            // Rows in step (no context, or a cache step): slice the tables once for q and k; else gather each token's position.
            if ((context is null ? 0 : context.StartPosition) is { } start)
                (q, k) = rotary.Apply(q, k, start);
            else
                (q, k) = (rotary.Apply(q, context!.Positions), rotary.Apply(k, context!.Positions));
        }
        // A context may attend by itself (a paged cache's decode step reads its blocks in place); only standard attention.
        var direct = blockSize is null && scale is null && softcap is null ? context?.AttendDirectly(layer, q, k, v) : null; // (B, H, T, Dh)
        var inputs = direct is null ? context?.Attend(layer, k, v) ?? new AttentionInputs(k, v, null, IsCausal: true) : default; // keys (B, Hkv, S, Dh)
        var y = direct is not null ? direct
            : blockSize is { } block
            ? BlockwiseAttention.Attend(q, inputs, block, scale ?? 1 / Math.Sqrt(headDim), softcap) // (B, H, T, Dh), never T×S whole
            : scale is null && softcap is null
            ? Attend(q, inputs, heads)                                       // (B, H, T, Dh), fused
            : Attend(q, inputs, heads, scale ?? 1 / Math.Sqrt(headDim), softcap); // (B, H, T, Dh), written out
        var merged = t == 1 ? y.reshape(b, 1, heads * headDim) : y.transpose(1, 2).reshape(b, t, heads * headDim); // (B, T, H·Dh)
        return wo.Forward(merged, addOutputBias); // (B, T, D)
    }

    /// <summary>
    /// (B, T, n·Dh) -> (B, n, T, Dh). One token needs no transpose: with T = 1 the view already has that layout,
    /// which saves a tensor a projection in every decode step.
    /// </summary>
    private Tensor SplitHeads(Tensor projected, long b, long t, int n) => t == 1
        ? projected.view(b, n, 1, headDim)
        : projected.view(b, t, n, headDim).transpose(1, 2);

    /// <summary>
    /// softmax(QKᵀ/√Dh + mask) V through the fused kernel: queries (B, H, T, Dh) over
    /// <paramref name="inputs"/>' keys and values (their Hkv heads repeated to H), (B, H, T, Dh) out.
    /// </summary>
    public static Tensor Attend(Tensor q, AttentionInputs inputs, int heads)
    {
        // A cache may hold another dtype than the queries (a float32 cache under a bf16 compute dtype).
        // A decode step on the CPU (one query per row, every cached key visible): a loop on this thread (see AttendOne).
        if (inputs.Mask is null && (!inputs.IsCausal || inputs.Keys.size(2) == 1) && DecodeKernels.TakesOneQuery(q, inputs.Keys, inputs.Values))
            return DecodeKernels.AttendOne(q, inputs.Keys, inputs.Values, 1 / Math.Sqrt(q.size(3))); // (B, H, 1, Dh)
        var k = ExpandKvHeads(SameType(inputs.Keys, q), heads);   // (B, H, S, Dh)
        var v = ExpandKvHeads(SameType(inputs.Values, q), heads); // (B, H, S, Dh)
        return inputs.Mask is { } mask
            ? nn.functional.scaled_dot_product_attention(q, k, v, mask)                    // mask (B, 1, T, S)
            : nn.functional.scaled_dot_product_attention(q, k, v, is_casual: inputs.IsCausal);
    }

    /// <summary>
    /// softmax(mask(cap · tanh(QKᵀ · scale / cap))) V written out, for what the fused kernel cannot do (Gemma 2's soft-capped
    /// scores and its query scale), as transformers' eager attention computes it: scores scaled, capped (when
    /// <paramref name="softcap"/> is given), masked, then a float32 softmax. Queries (B, H, T, Dh), (B, H, T, Dh) out.
    /// </summary>
    public static Tensor Attend(Tensor q, AttentionInputs inputs, int heads, double scale, double? softcap)
    {
        var k = ExpandKvHeads(inputs.Keys.to(q.dtype), heads);          // (B, H, S, Dh)
        var v = ExpandKvHeads(inputs.Values.to(q.dtype), heads);        // (B, H, S, Dh)
        var scores = q.matmul(k.transpose(-2, -1)) * scale;            // (B, H, T, S)
        if (softcap is { } cap) scores = (scores / cap).tanh() * cap;   // in (-cap, cap)
        var allowed = inputs.Mask                                       // (B, 1, T, S) or (T, S); null: all-to-all
            ?? (inputs.IsCausal ? CausalMask(q.shape[2], k.shape[2] - q.shape[2], q.device) : null);
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1, ScalarType.Float32).to(q.dtype).matmul(v); // (B, H, T, Dh)
    }

    /// <summary>A cached tensor in the queries' dtype, without a conversion op when it already is.</summary>
    private static Tensor SameType(Tensor cached, Tensor q) => cached.dtype == q.dtype ? cached : cached.to(q.dtype);

    /// <summary>Repeats each of Hkv heads H/Hkv times along dim 1: (B, Hkv, S, Dh) -> (B, H, S, Dh).</summary>
    public static Tensor ExpandKvHeads(Tensor kv, int heads)
    {
        long kvHeads = kv.size(1);
        return kvHeads == heads ? kv : kv.repeat_interleave(heads / kvHeads, dim: 1);
    }

    /// <summary>Boolean mask, (T, start+T): query i (at position start+i) may see key j when j ≤ start+i.</summary>
    public static Tensor CausalMask(long t, long start, Device device) => KvCache.CausalMask(t, start, device);

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
