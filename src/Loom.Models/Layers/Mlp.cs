using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Feed-forward layer: SwiGLU down(silu(x W_gate) · x W_up), GeGLU down(gelu(x W_gate) · x W_up) or GELU down(gelu(x W_up)) (exact or tanh-approximated).</summary>
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
        gate = activation.IsGated() ? new Dense(modelDim, mlpDim, useBias, device, generator, (LogicalAxes.Mlp, LogicalAxes.Embed)) : null;
        up = new Dense(modelDim, mlpDim, useBias, device, generator, (LogicalAxes.Mlp, LogicalAxes.Embed));
        down = new Dense(mlpDim, modelDim, useBias, device, generator, (LogicalAxes.Embed, LogicalAxes.Mlp));
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, addOutputBias: true); // (B, T, D)

    /// <summary>The layer on x, (B, T, D); without <paramref name="addOutputBias"/> the down projection's bias is left out (see <see cref="Shard"/>).</summary>
    public Tensor Forward(Tensor x, bool addOutputBias)
    {
        var h = MlpActivations.Hidden(activation, gate?.forward(x), up.forward(x)); // (B, T, F)
        return down.Forward(h, addOutputBias);                                      // (B, T, D)
    }

    /// <summary>The down projection's bias, (D); null without biases.</summary>
    public Tensor? OutputBias => down.Bias;

    /// <summary>
    /// Keeps this rank's hidden units <c>[index·F/count, (index+1)·F/count)</c> (Megatron-style: the gate and up
    /// kernels by rows, the down kernel by columns), so that <see cref="Forward"/> gives a partial sum.
    /// </summary>
    /// <exception cref="ArgumentException">The hidden units do not split evenly.</exception>
    public void Shard(int index, int count)
    {
        gate?.Shard(0, index, count);
        up.Shard(0, index, count);
        down.Shard(1, index, count);
    }
}

/// <summary>The nonlinearities of <see cref="MlpActivation"/>, shared by dense and expert MLPs.</summary>
public static class MlpActivations
{
    /// <summary>Whether the activation multiplies a gate branch into the up branch (three kernels, not two).</summary>
    public static bool IsGated(this MlpActivation activation) => activation is MlpActivation.SwiGlu or MlpActivation.GeGlu;

    /// <summary>The hidden units from the gate branch's pre-activations (null when not gated) and the up branch's, (..., F).</summary>
    public static Tensor Hidden(MlpActivation activation, Tensor? gate, Tensor up) => activation switch
    {
        MlpActivation.SwiGlu => nn.functional.silu(gate ?? throw NoGate(activation)) * up,
        MlpActivation.GeGlu => (gate ?? throw NoGate(activation)).gelu(TorchSharp.Modules.GELU.Approximate.tanh) * up,
        MlpActivation.GeluTanh => up.gelu(TorchSharp.Modules.GELU.Approximate.tanh),
        _ => nn.functional.gelu(up),
    };

    private static ArgumentNullException NoGate(MlpActivation activation) => new("gate", $"{activation} needs the gate branch");
}
