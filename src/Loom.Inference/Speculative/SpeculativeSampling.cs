using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Speculative;

/// <summary>The outcome of verifying one round of draft tokens.</summary>
/// <param name="Accepted">How many draft tokens, from the first, the target accepted (0..k).</param>
/// <param name="Next">The target's own token after them: its correction of the first rejected draft token, or a bonus token when all k were accepted.</param>
public readonly record struct Verdict(int Accepted, int Next);

/// <summary>
/// The accept/reject rule of speculative decoding (Leviathan et al. 2023, Algorithm 1): it turns k draft tokens
/// and the target's k+1 next-token distributions into between 1 and k+1 tokens distributed exactly as the
/// target alone would sample them.
/// </summary>
public static class SpeculativeSampling
{
    /// <summary>
    /// Greedy decoding: accept draft tokens while each equals the target's argmax at its position, then take the
    /// target's argmax after the last accepted one. The output is the target's greedy output.
    /// </summary>
    /// <param name="targetArgmax">The target's argmax at each of the k+1 positions.</param>
    /// <param name="draft">The k draft tokens.</param>
    public static Verdict Greedy(IReadOnlyList<long> targetArgmax, IReadOnlyList<int> draft)
    {
        ArgumentNullException.ThrowIfNull(targetArgmax);
        ArgumentNullException.ThrowIfNull(draft);
        if (targetArgmax.Count != draft.Count + 1) throw new ArgumentException($"{draft.Count} draft tokens need {draft.Count + 1} target positions, not {targetArgmax.Count}");
        int accepted = 0;
        while (accepted < draft.Count && draft[accepted] == targetArgmax[accepted]) accepted++;
        return new Verdict(accepted, (int)targetArgmax[accepted]);
    }

    /// <summary>
    /// Sampling: draft token x_i, drawn from q_i, is accepted with probability min(1, p_i(x)/q_i(x)); the first
    /// rejected one is replaced by a draw from the normalised residual max(0, p_i − q_i), and when all k are accepted a
    /// bonus token is drawn from p_k. Every draw uses <paramref name="generator"/>, on the CPU.
    /// </summary>
    /// <param name="target">The target's distributions p, (k+1, V) float32 on the CPU, after temperature, top-k and top-p.</param>
    /// <param name="draft">The draft's distributions q, (k, V) float32 on the CPU, processed by the same rule; null when the
    /// proposals are deterministic (n-gram lookup), i.e. each q_i is a point mass on its token.</param>
    /// <param name="tokens">The k draft tokens.</param>
    /// <param name="generator">A CPU generator.</param>
    public static Verdict Sample(Tensor target, Tensor? draft, IReadOnlyList<int> tokens, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(tokens);
        int k = tokens.Count;
        if (target.shape[0] != k + 1) throw new ArgumentException($"{k} draft tokens need {k + 1} target rows, not {target.shape[0]}");
        if (draft is not null && draft.shape[0] != k) throw new ArgumentException($"{k} draft tokens need {k} draft rows, not {draft.shape[0]}");
        using var scope = NewDisposeScope();
        for (int i = 0; i < k; i++)
        {
            int x = tokens[i];
            var p = target[i];                                          // (V)
            var q = draft?[i] ?? PointMass(x, p);                       // (V)
            double px = p[x].item<float>(), qx = q[x].item<float>();
            double u = rand(1, generator: generator).item<float>();     // U[0, 1)
            if (u * qx < px) continue;                                  // accepted with probability min(1, p(x)/q(x))
            var residual = (p - q).clamp_min(RootedScalars.Zero); // (V) max(0, p − q); rooted Scalars: see RootedScalars
            float mass = residual.sum().item<float>();
            if (mass <= 0) residual = p;                                // p = q up to rounding: the residual is empty
            return new Verdict(i, Draw(residual, generator));
        }
        return new Verdict(k, Draw(target[k], generator));
    }

    /// <summary>A one-hot distribution on <paramref name="token"/>, shaped like <paramref name="like"/>: a deterministic proposal's q.</summary>
    private static Tensor PointMass(int token, Tensor like) => zeros_like(like).index_fill_(0, tensor(new long[] { token }), RootedScalars.One); // (V)

    /// <summary>One draw from unnormalised weights, (V).</summary>
    private static int Draw(Tensor weights, Generator generator) =>
        (int)multinomial(weights.unsqueeze(0), 1, generator: generator).item<long>();
}
