using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Root-mean-square norm: x / sqrt(mean(x²) + ε) · g.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (D)
    private readonly double eps;

    /// <summary>Creates the norm with unit scale.</summary>
    public RmsNorm(int dim, double eps, Device? device = null) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(dim, device: device));
        this.eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) // (..., D)
    {
        var rms = x.pow(2).mean(new long[] { -1 }, keepdim: true).add_(eps).rsqrt_(); // (..., 1)
        return x * rms * weight;
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
    /// <summary>A <paramref name="kind"/> norm over the last <paramref name="dim"/> features (a layer norm's bias only with <paramref name="useBias"/>).</summary>
    public static nn.Module<Tensor, Tensor> Create(NormKind kind, int dim, double eps, bool useBias, Device? device) => kind switch
    {
        NormKind.RmsNorm => new RmsNorm(dim, eps, device),
        _ => new LayerNorm(dim, eps, useBias, device),
    };
}
