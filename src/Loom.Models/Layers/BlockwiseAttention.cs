using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Attention computed block by block with an online softmax (Milakov and Gimelshein 2018; FlashAttention's
/// forward, Dao et al. 2022), so that the T×S score matrix is never held whole: for each block of queries it
/// walks the blocks of keys keeping a running maximum m, a running sum l of exp(s − m) and a running output
/// acc, rescaling both by exp(m_old − m_new) whenever the maximum grows. Without gradients its memory is
/// O(query block · key block) for the scores instead of O(T · S). It is the reference (plain tensor ops)
/// path, not a fused kernel: under autograd each block's probabilities are still saved for the backward pass.
/// </summary>
public static class BlockwiseAttention
{
    /// <summary>
    /// As <see cref="Attention.Attend(Tensor, AttentionInputs, int, double, double?)"/>, blockwise: queries
    /// (B, H, T, Dh) over <paramref name="inputs"/>' keys and values (B, Hkv, S, Dh), (B, H, T, Dh) out.
    /// </summary>
    public static Tensor Attend(Tensor q, AttentionInputs inputs, int blockSize, double scale, double? softcap = null) =>
        Attend(q, inputs.Keys.to(q.dtype), inputs.Values.to(q.dtype), inputs.Mask, inputs.IsCausal, blockSize, blockSize, scale, softcap);

    /// <summary>
    /// softmax(mask(cap · tanh(QKᵀ · scale / cap))) V, one <paramref name="queryBlock"/> × <paramref name="keyBlock"/>
    /// tile of scores at a time. q (B, H, T, Dh); k, v (B, Hkv, S, Dh) with H a multiple of Hkv (each group of
    /// H/Hkv query heads reads one key/value head, without repeating it). The queries sit at absolute positions
    /// S−T..S−1 (a cached prefix of S−T keys before them): with <paramref name="isCausal"/> query i sees key j when
    /// j ≤ S−T+i, as <see cref="Attention.CausalMask"/>. <paramref name="mask"/>, (B, 1, T, S) or (T, S), is boolean
    /// (true = may attend) or additive (added to the scores). Rows that see no key at all come out as zeros.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool isCausal, int queryBlock, int keyBlock, double scale, double? softcap = null)
    {
        if (queryBlock <= 0 || keyBlock <= 0) throw new ArgumentException($"block sizes must be positive, not {queryBlock} × {keyBlock}");
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dh = q.shape[3];
        long hkv = k.shape[1], s = k.shape[2], dv = v.shape[3];
        if (h % hkv != 0) throw new ArgumentException($"{h} query heads do not group over {hkv} key/value heads");
        long group = h / hkv, offset = s - t;
        var qg = q.view(b, hkv, group, t, dh);       // (B, Hkv, G, T, Dh)
        var kg = k.unsqueeze(2);                     // (B, Hkv, 1, S, Dh)
        var vg = v.unsqueeze(2).to(float32);         // (B, Hkv, 1, S, Dv): accumulate in float32
        var m5 = mask is null ? null : mask.dim() == 4 ? mask.unsqueeze(2) : mask; // (B, 1, 1, T, S) or (T, S)
        var outputs = new List<Tensor>();
        // Each tile's temporaries are disposed as soon as it is folded in (a dispose scope would otherwise keep all T×S
        // of them alive to its end); autograd keeps what the backward pass needs by its own references.
        for (long t0 = 0; t0 < t; t0 += queryBlock)
        {
            using var rows = NewDisposeScope();
            long tq = Math.Min(queryBlock, t - t0);
            var qb = qg.narrow(3, t0, tq);                                          // (B, Hkv, G, tq, Dh)
            var queryPositions = arange(offset + t0, offset + t0 + tq, device: q.device).unsqueeze(1); // (tq, 1)
            var m = full(new[] { b, hkv, group, tq, 1L }, double.NegativeInfinity, dtype: float32, device: q.device); // running max
            var l = zeros(new[] { b, hkv, group, tq, 1L }, dtype: float32, device: q.device);  // running Σ exp(s − m)
            var acc = zeros(new[] { b, hkv, group, tq, dv }, dtype: float32, device: q.device); // running Σ exp(s − m) v
            // Causal: keys after the block's last query are unseen by all of it, so those blocks are skipped.
            long keyEnd = isCausal ? Math.Min(s, offset + t0 + tq) : s;
            for (long s0 = 0; s0 < keyEnd; s0 += keyBlock)
            {
                Tensor mOld = m, lOld = l, accOld = acc;
                using (NewDisposeScope())
                {
                    long tk = Math.Min(keyBlock, keyEnd - s0);
                    var scores = qb.matmul(kg.narrow(3, s0, tk).transpose(-2, -1)).to(float32) * scale; // (B, Hkv, G, tq, tk)
                    if (softcap is { } cap) scores = (scores / cap).tanh() * cap; // elementwise, so per tile as on the whole
                    if (isCausal)
                    {
                        var keyPositions = arange(s0, s0 + tk, device: q.device).unsqueeze(0); // (1, tk)
                        scores = scores.masked_fill(keyPositions > queryPositions, double.NegativeInfinity); // (tq, tk) broadcast
                    }
                    if (m5 is not null)
                    {
                        var tile = m5.narrow(-2, t0, tq).narrow(-1, s0, tk); // (B, 1, 1, tq, tk) or (tq, tk)
                        scores = tile.dtype == ScalarType.Bool
                            ? scores.masked_fill(tile.logical_not(), double.NegativeInfinity)
                            : scores + tile.to(float32);
                    }
                    // The maximum only keeps exp() in range: the result does not depend on it, so no gradient flows through it.
                    var mNew = maximum(m, scores.detach().amax(new long[] { -1 }, keepdim: true)); // (B, Hkv, G, tq, 1)
                    // A row with nothing visible yet has m = −∞; shifting by 0 instead keeps exp() from giving NaN (−∞ − −∞).
                    var shift = mNew.masked_fill(mNew.isneginf(), 0);
                    var alpha = (m - shift).exp();                                  // exp(m_old − m_new); 0 while m_old = −∞
                    var p = (scores - shift).exp();                                 // (B, Hkv, G, tq, tk)
                    l = (l * alpha + p.sum(-1, keepdim: true)).MoveToOuterDisposeScope();
                    acc = (acc * alpha + p.matmul(vg.narrow(3, s0, tk))).MoveToOuterDisposeScope(); // (B, Hkv, G, tq, Dv)
                    m = mNew.MoveToOuterDisposeScope();
                }
                mOld.Dispose();
                lOld.Dispose();
                accOld.Dispose();
            }
            outputs.Add((acc / l.masked_fill(l == 0, 1)).MoveToOuterDisposeScope()); // fully masked rows: 0 / 1 = 0
        }
        return cat(outputs, 3).view(b, h, t, dv).to(q.dtype); // (B, H, T, Dv)
    }
}
