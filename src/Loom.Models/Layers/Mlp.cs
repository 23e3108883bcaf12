using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Feed-forward layer: SwiGLU down(silu(x W_gate) · x W_up) or GELU down(gelu(x W_up)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Dense? gate; // (F, D), SwiGLU only
    private readonly Dense up;    // (F, D)
    private readonly Dense down;  // (D, F)

    /// <summary>Creates the layer; initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public Mlp(int modelDim, int mlpDim, MlpActivation activation, bool useBias, Device? device = null, Generator? generator = null) : base(nameof(Mlp))
    {
        gate = activation == MlpActivation.SwiGlu ? new Dense(modelDim, mlpDim, useBias, device, generator) : null;
        up = new Dense(modelDim, mlpDim, useBias, device, generator);
        down = new Dense(mlpDim, modelDim, useBias, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) // (B, T, D)
    {
        var h = gate is null
            ? nn.functional.gelu(up.forward(x))                      // (B, T, F)
            : nn.functional.silu(gate.forward(x)) * up.forward(x);   // (B, T, F)
        return down.forward(h);                                      // (B, T, D)
    }
}
