using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Feed-forward layer: SwiGLU down(silu(x W_gate) · x W_up), GeGLU down(gelu(x W_gate) · x W_up) or GELU down(gelu(x W_up)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Dense? gate; // (F, D), SwiGLU only
    private readonly Dense up;    // (F, D)
    private readonly Dense down;  // (D, F)
    private readonly MlpActivation activation;

    /// <summary>Creates the layer; initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public Mlp(int modelDim, int mlpDim, MlpActivation activation, bool useBias, Device? device = null, Generator? generator = null) : base(nameof(Mlp))
    {
        this.activation = activation;
        gate = activation.IsGated() ? new Dense(modelDim, mlpDim, useBias, device, generator) : null;
        up = new Dense(modelDim, mlpDim, useBias, device, generator);
        down = new Dense(mlpDim, modelDim, useBias, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) // (B, T, D)
    {
        var h = MlpActivations.Hidden(activation, gate?.forward(x), up.forward(x)); // (B, T, F)
        return down.forward(h);                                                     // (B, T, D)
    }
}

/// <summary>The nonlinearities of <see cref="MlpActivation"/>, shared by dense and expert MLPs.</summary>
public static class MlpActivations
{
    /// <summary>Whether the activation multiplies a gate branch into the up branch (three kernels, not two).</summary>
    public static bool IsGated(this MlpActivation activation) => activation != MlpActivation.Gelu;

    /// <summary>The hidden units from the gate branch's pre-activations (null when not gated) and the up branch's, (..., F).</summary>
    public static Tensor Hidden(MlpActivation activation, Tensor? gate, Tensor up) => activation switch
    {
        MlpActivation.SwiGlu => nn.functional.silu(gate ?? throw NoGate(activation)) * up,
        MlpActivation.GeGlu => (gate ?? throw NoGate(activation)).gelu(TorchSharp.Modules.GELU.Approximate.tanh) * up,
        _ => nn.functional.gelu(up),
    };

    private static ArgumentNullException NoGate(MlpActivation activation) => new("gate", $"{activation} needs the gate branch");
}
