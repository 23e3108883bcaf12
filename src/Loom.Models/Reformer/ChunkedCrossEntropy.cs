using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// The output layer and its loss computed per chunk of positions (Reformer §3, "Chunking"): logits = h Wᵀ,
/// cross-entropy and log²Z for <c>chunk</c> positions at a time, so the (B, T, V) logits never exist at once,
/// neither in the forward nor in the backward (which recomputes each chunk's logits from h and W). The result
/// equals <see cref="Reference"/> (the whole logits at once) to rounding.
/// </summary>
public static class ChunkedCrossEntropy
{
    /// <summary>
    /// Weighted sums over positions of the negative log-likelihood and of log²Z: Σ w·(logZ − z_target) and Σ w·logZ²,
    /// both scalar float32, differentiable with respect to <paramref name="hidden"/> and <paramref name="weight"/>.
    /// </summary>
    /// <param name="hidden">Final (normed) hidden states, (B, T, E).</param>
    /// <param name="weight">Output projection, (V, E).</param>
    /// <param name="targets">Target ids, (B, T); negative ids count as 0 (give them weight 0).</param>
    /// <param name="lossWeights">Weight of each target, (B, T) float32.</param>
    /// <param name="chunkLength">Positions per chunk.</param>
    public static (Tensor NllSum, Tensor ZSum) Compute(Tensor hidden, Tensor weight, Tensor targets, Tensor lossWeights, int chunkLength)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(lossWeights);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkLength, 1);
        var outputs = Function.apply(hidden, weight, targets.clamp_min(0), lossWeights.to(ScalarType.Float32), chunkLength);
        return (outputs[0], outputs[1]);
    }

    /// <summary>The same sums from the whole (B, T, V) logits at once: the reference <see cref="Compute"/> must match.</summary>
    public static (Tensor NllSum, Tensor ZSum) Reference(Tensor hidden, Tensor weight, Tensor targets, Tensor lossWeights)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(lossWeights);
        var logits = hidden.matmul(weight.t()).to(ScalarType.Float32);                     // (B, T, V)
        var logZ = logits.logsumexp(-1);                                                  // (B, T)
        var target = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);   // (B, T)
        var w = lossWeights.to(ScalarType.Float32);                                       // (B, T)
        return (((logZ - target) * w).sum(), (logZ.square() * w).sum());
    }

    private sealed class Function : autograd.MultiTensorFunction<Function>
    {
        private const string ChunkKey = "chunk";

        public override string Name => "ChunkedCrossEntropy";

        // Runs without grad: only the two sums leave each chunk.
        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (h, w, targets, weights) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            var chunk = (int)vars[4];
            ctx.save_for_backward([h, w, targets, weights]);
            ctx.save_data(ChunkKey, chunk);
            var nll = zeros(1, ScalarType.Float32, h.device).squeeze();
            var z = zeros(1, ScalarType.Float32, h.device).squeeze();
            foreach (var (start, length) in Chunks(h.shape[1], chunk))
            {
                using var scope = NewDisposeScope();
                var logits = h.narrow(1, start, length).matmul(w.t()).to(ScalarType.Float32);   // (B, c, V)
                var logZ = logits.logsumexp(-1);                                               // (B, c)
                var target = logits.gather(-1, targets.narrow(1, start, length).unsqueeze(-1)).squeeze(-1); // (B, c)
                var wc = weights.narrow(1, start, length);                                     // (B, c)
                nll.add_(((logZ - target) * wc).sum());
                z.add_((logZ.square() * wc).sum());
            }
            return [nll, z];
        }

        // d/dlogits of g_nll·Σ w(logZ − z_t) + g_z·Σ w·logZ² = w·(g_nll + 2 g_z logZ)·softmax − w·g_nll·onehot(t).
        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
        {
            var saved = ctx.get_saved_variables();
            var (h, w, targets, weights) = (saved[0], saved[1], saved[2], saved[3]);
            var chunk = (int)ctx.get_data(ChunkKey);
            var (gNll, gZ) = (grad_outputs[0], grad_outputs[1]);
            var dh = zeros_like(h);                                                            // (B, T, E)
            var dw = zeros_like(w);                                                            // (V, E)
            foreach (var (start, length) in Chunks(h.shape[1], chunk))
            {
                using var scope = NewDisposeScope();
                var hc = h.narrow(1, start, length);                                           // (B, c, E)
                var logits = hc.matmul(w.t()).to(ScalarType.Float32);                          // (B, c, V)
                var logZ = logits.logsumexp(-1, keepdim: true);                                // (B, c, 1)
                var wc = weights.narrow(1, start, length).unsqueeze(-1);                       // (B, c, 1)
                var dlogits = (logits - logZ).exp() * (wc * (gNll + 2 * gZ * logZ));          // (B, c, V)
                dlogits.scatter_add_(-1, targets.narrow(1, start, length).unsqueeze(-1), -(wc * gNll)); // − w·g_nll at the target
                dlogits = dlogits.to(h.dtype);
                dh.narrow(1, start, length).copy_(dlogits.matmul(w));                          // (B, c, E)
                dw.add_(einsum("bcv,bce->ve", dlogits, hc));                                    // (V, E)
            }
            return [dh, dw, null!, null!, null!];
        }

        private static IEnumerable<(long Start, long Length)> Chunks(long t, int chunk)
        {
            for (long start = 0; start < t; start += chunk)
                yield return (start, Math.Min(chunk, t - start));
        }
    }
}
