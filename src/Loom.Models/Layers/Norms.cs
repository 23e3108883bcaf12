using Loom.Models.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Root-mean-square norm: x / sqrt(mean(x²) + ε) · g, or · (1 + g) with a unit offset (Gemma).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (D)
    private readonly double eps;
    private readonly bool unitOffset;

    /// <summary>
    /// Creates the norm with unit scale: g = 1, or, with <paramref name="unitOffset"/>, g = 0 scaling by 1 + g (Gemma
    /// stores the offset from 1, so the weight is kept as stored rather than folded into 1 + g).
    /// </summary>
    public RmsNorm(int dim, double eps, Device? device = null, bool unitOffset = false) : base(nameof(RmsNorm))
    {
        weight = new Parameter(unitOffset ? zeros(dim, device: device) : ones(dim, device: device));
        this.eps = eps;
        this.unitOffset = unitOffset;
        RegisterComponents();
    }

    /// <inheritdoc />
    /// <remarks>
    /// Contiguous float32 CPU inputs that record no gradient (inference) take a hand-written loop, one tensor instead
    /// of four ops (a decode step runs 2L + 1 norms); everything else takes <see cref="Reference"/>.
    /// </remarks>
    public override Tensor forward(Tensor x) // (..., D)
    {
        ArgumentNullException.ThrowIfNull(x);
        return DecodeKernels.Takes(x, weight) ? DecodeKernels.RmsNorm(x, weight, eps, unitOffset) : Reference(x);
    }

    /// <summary>The norm in libtorch ops: x · rsqrt(mean(x²) + eps) · g over the last dimension, (..., D).</summary>
    public Tensor Reference(Tensor x) // (..., D)
    {
        ArgumentNullException.ThrowIfNull(x);
        var rms = x.pow(2).mean(new long[] { -1 }, keepdim: true).add_(eps).rsqrt_(); // (..., 1)
        return unitOffset ? (x * rms).mul_(1 + weight) : (x * rms).mul_(weight); // one tensor fewer per norm
    }
}

/// <summary>Layer norm with an optional bias (PaLM uses none).</summary>
public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (D)
    private readonly Parameter? bias;  // (D)
    private readonly double eps;

    /// <summary>Creates the norm with unit scale and zero bias.</summary>
    public LayerNorm(int dim, double eps, bool useBias, Device? device = null) : base(nameof(LayerNorm))
    {
        weight = new Parameter(ones(dim, device: device));
        bias = useBias ? new Parameter(zeros(dim, device: device)) : null;
        this.eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) =>
        nn.functional.layer_norm(x, new[] { x.shape[^1] }, weight, bias, eps); // (..., D)
}

/// <summary>Builds the norm a <see cref="NormKind"/> names.</summary>
public static class Norms
{
    /// <summary>
    /// A <paramref name="kind"/> norm over the last <paramref name="dim"/> features (a layer norm's bias only with
    /// <paramref name="useBias"/>; an RMSNorm scaling by 1 + g with <paramref name="unitOffset"/>).
    /// </summary>
    public static nn.Module<Tensor, Tensor> Create(NormKind kind, int dim, double eps, bool useBias, Device? device, bool unitOffset = false) => kind switch
    {
        NormKind.RmsNorm => new RmsNorm(dim, eps, device, unitOffset),
        _ => new LayerNorm(dim, eps, useBias, device),
    };
}
