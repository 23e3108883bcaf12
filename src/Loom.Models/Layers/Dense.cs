using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>A dense kernel y = x Wᵀ (+ b) with PaLM's initialisation W ~ N(0, 1/sqrt(fan_in)).</summary>
public sealed class Dense : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (out, in)
    private readonly Parameter? bias;  // (out)

    /// <summary>Creates the kernel on <paramref name="device"/> (the meta device builds shapes only);
    /// initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public Dense(int inFeatures, int outFeatures, bool useBias, Device? device = null, Generator? generator = null) : base(nameof(Dense))
    {
        weight = new Parameter(empty(outFeatures, inFeatures, device: device));
        bias = useBias ? new Parameter(zeros(outFeatures, device: device)) : null;
        Initializers.Normal(weight, 1.0 / Math.Sqrt(inFeatures), generator);
        RegisterComponents();
    }

    /// <summary>The kernel, (out, in).</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight, bias); // (..., in) -> (..., out)
}
