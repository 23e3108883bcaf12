using Loom.Models.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Rotary position embeddings (Su et al. 2021), rotate-half form: each pair (x_i, x_{i+D/2}) of a
/// head is rotated by the angle pos · base^(-2i/D), so q·k depends only on the positions' difference.
/// </summary>
public sealed class Rotary : nn.Module
{
    private readonly Tensor cos;        // (maxLen, D/2)
    private readonly Tensor sin;        // (maxLen, D/2)
    private readonly Tensor cos_full;   // (maxLen, D): [cos, cos]
    private readonly Tensor sin_signed; // (maxLen, D): [-sin, sin]

    /// <summary>
    /// Precomputes the angles for positions 0..maxLength-1, with the frequencies scaled by <paramref name="scaling"/> when given
    /// (and cos and sin multiplied by its <see cref="RopeScaling.AttentionScaling"/>, as transformers does).
    /// </summary>
    public Rotary(int headDim, int maxLength, double ropeBase, Device? device = null, RopeScaling? scaling = null) : base(nameof(Rotary))
    {
        var compute = device?.type == DeviceType.META ? CPU : device ?? CPU;
        var inv = tensor(InverseFrequencies(headDim, ropeBase, scaling), dtype: float64, device: compute); // (D/2)
        var angles = outer(arange(maxLength, dtype: float64, device: compute), inv);                // (maxLen, D/2)
        double attention = scaling?.AttentionScaling() ?? 1; // YaRN scales cos and sin, so every q·k by its square
        cos = (angles.cos() * attention).to(float32).to(device ?? CPU);
        sin = (angles.sin() * attention).to(float32).to(device ?? CPU);
        cos_full = cat(new[] { cos, cos }, 1);
        sin_signed = cat(new[] { -sin, sin }, 1);
        register_buffer(nameof(cos), cos, persistent: false);
        register_buffer(nameof(sin), sin, persistent: false);
        register_buffer(nameof(cos_full), cos_full, persistent: false);
        register_buffer(nameof(sin_signed), sin_signed, persistent: false);
    }

    /// <summary>
    /// The angle per position of each of a head's D/2 pairs: base^(-2i/D), scaled by <paramref name="scaling"/> when
    /// given; in float64, so that the float32 tables are the correctly rounded cosines and sines.
    /// </summary>
    public static double[] InverseFrequencies(int headDim, double ropeBase, RopeScaling? scaling = null)
    {
        using var exponents = -arange(0, headDim, 2, dtype: float64) / headDim; // (D/2)
        using var unscaled = pow(ropeBase, exponents);                           // (D/2)
        var inv = unscaled.data<double>().ToArray();
        return scaling is null ? inv : scaling.Apply(inv, ropeBase);
    }

    /// <summary>Rotates <paramref name="x"/>, (B, H, T, D), whose tokens sit at positions start..start+T-1.</summary>
    public Tensor Apply(Tensor x, long start)
    {
        long t = x.size(2);
        if (start + t <= cos_full.size(0) && DecodeKernels.Takes(x, cos_full, sin_signed)) return DecodeKernels.Rotate(x, cos_full, sin_signed, start); // bit for bit Rotate's
        return Rotate(x, SameType(cos_full.narrow(0, start, t), x), SameType(sin_signed.narrow(0, start, t), x)); // angles (T, D)
    }

    /// <summary>
    /// Rotates queries, (B, H, T, D), and keys, (B, Hkv, T, D), whose tokens sit at positions start..start+T-1, slicing
    /// the tables once for both.
    /// </summary>
    public (Tensor Queries, Tensor Keys) Apply(Tensor q, Tensor k, long start)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        long t = q.size(2);
        if (start + t <= cos_full.size(0) && DecodeKernels.Takes(q, k) && DecodeKernels.Takes(cos_full, sin_signed)) // a decode step's heads: one loop each, bit for bit Rotate's
            return (DecodeKernels.Rotate(q, cos_full, sin_signed, start), DecodeKernels.Rotate(k, cos_full, sin_signed, start));
        var c = SameType(cos_full.narrow(0, start, t), q);   // (T, D)
        var s = SameType(sin_signed.narrow(0, start, t), q); // (T, D)
        return (Rotate(q, c, s), Rotate(k, SameType(c, k), SameType(s, k)));
    }

    /// <summary>Rotates <paramref name="x"/>, (B, H, T, D), whose tokens sit at <paramref name="positions"/>, (B, T)
    /// (packed rows restart positions at 0 for each example).</summary>
    public Tensor Apply(Tensor x, Tensor positions)
    {
        long b = positions.shape[0], t = positions.shape[1];
        var flat = positions.reshape(-1);
        var c = SameType(cos_full.index_select(0, flat).view(b, 1, t, -1), x);   // (B, 1, T, D)
        var s = SameType(sin_signed.index_select(0, flat).view(b, 1, t, -1), x); // (B, 1, T, D)
        return Rotate(x, c, s);
    }

    /// <summary>
    /// Reference rotation written out in the rotate-half form, for tests that check <see cref="Apply(Tensor, long)"/>:
    /// x, (B, H, T, D), at positions start..start+T-1, from the half-width tables.
    /// </summary>
    public Tensor Reference(Tensor x, long start)
    {
        long t = x.shape[2], half = x.shape[3] / 2;
        var c = cos.narrow(0, start, t).to(x.dtype);   // (T, D/2)
        var s = sin.narrow(0, start, t).to(x.dtype);   // (T, D/2)
        var x1 = x.narrow(-1, 0, half);                // (B, H, T, D/2)
        var x2 = x.narrow(-1, half, half);             // (B, H, T, D/2)
        return cat(new[] { x1 * c - x2 * s, x2 * c + x1 * s }, -1); // (B, H, T, D)
    }

    /// <summary>
    /// [x1, x2] ↦ [x1·c − x2·s, x2·c + x1·s] in four ops, two of them in place: the halves swapped (a roll by D/2) times
    /// [−s, s], plus x times [c, c]; (B, H, T, D) out, bit for bit the reference's (a − b is a + (−b)). A decode step
    /// calls it twice a layer, so its op count is per-token overhead.
    /// </summary>
    private static Tensor Rotate(Tensor x, Tensor cosFull, Tensor sinSigned) =>
        x.roll(x.size(3) / 2, -1).mul_(sinSigned).add_(x * cosFull); // (B, H, T, D)

    /// <summary>A table in <paramref name="x"/>'s dtype, without a conversion op when it already is.</summary>
    private static Tensor SameType(Tensor table, Tensor x) => table.dtype == x.dtype ? table : table.to(x.dtype);
}
