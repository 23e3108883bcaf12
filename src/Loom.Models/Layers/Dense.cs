using Loom.Models.Adapters;
using Loom.Models.Kernels;
using Loom.Models.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// A dense kernel y = x Wᵀ (+ b) with PaLM's initialisation W ~ N(0, 1/sqrt(fan_in)). After
/// <see cref="QuantizeInt8"/> the kernel is held as int8 values and per-output-channel scales
/// (state keys <c>weight_int8</c> and <c>weight_scale</c> instead of <c>weight</c>) and the layer
/// is for inference only.
/// </summary>
public sealed class Dense : nn.Module<Tensor, Tensor>, IQuantizableKernel, IMixedPrecisionLayer
{
    // Field names are the state-dict keys: TorchSharp's module.to(device) finds fields by them.
    private Parameter? weight;          // (out, in), float; null once quantized
    private Parameter? bias;            // (out)
    private Tensor? weight_int8;        // (out, in), int8; quantized only
    private Tensor? weight_scale;       // (out), float32; quantized only
    // Deliberately not a registered component: the state dict stays the base weights alone, and the adapter's
    // parameters are saved, trained and counted through LoraAdapters.
    private LoraAdapter? adapter;

    /// <summary>Creates the kernel on <paramref name="device"/> (the meta device builds shapes only);
    /// initial values come from <paramref name="generator"/> (torch's default when null).
    /// <paramref name="axes"/> names the logical axes of the output and input features (t5x's kernel axes,
    /// for example ("heads", "embed")), which partitioning rules map onto a device mesh.</summary>
    public Dense(int inFeatures, int outFeatures, bool useBias, Device? device = null, Generator? generator = null, (string Out, string In)? axes = null) : base(nameof(Dense))
    {
        Axes = axes;
        weight = new Parameter(empty(outFeatures, inFeatures, device: device));
        bias = useBias ? new Parameter(zeros(outFeatures, device: device)) : null;
        Initializers.Normal(weight, 1.0 / Math.Sqrt(inFeatures), generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    /// <remarks>With a compute dtype, the output is in it too (the caller's residual add promotes it back to float32).</remarks>
    public ScalarType? ComputeDtype { get; set; }

    /// <summary>
    /// The LoRA update added to the kernel's output (<c>x Wᵀ + scale · B A x</c>); null when none. Set by
    /// <see cref="LoraAdapters"/>, which owns the adapter's parameters; the layer disposes it with itself.
    /// </summary>
    public LoraAdapter? Adapter
    {
        get => adapter;
        internal set => adapter = value;
    }

    /// <summary>The logical axis names of the (out, in) dimensions; null when the layer was given none (never partitioned).</summary>
    public (string Out, string In)? Axes { get; }

    /// <summary>The bias, (out) (the whole bias even when the kernel is row-sharded); null without one.</summary>
    public Parameter? Bias => bias;

    /// <summary>
    /// Keeps only part <paramref name="index"/> of <paramref name="count"/> equal parts of the kernel (tensor
    /// parallelism): along dim 0, the output features (column-parallel, Megatron's first kernel; the bias is cut
    /// with them), or along dim 1, the input features (row-parallel, the second kernel; the outputs are then
    /// partial sums, and the whole bias is to be added once after they are summed, see <see cref="Forward"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The dimension does not split evenly.</exception>
    public void Shard(int dim, int index, int count)
    {
        if (dim is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(dim), dim, "a kernel is (out, in): shard dim 0 or 1");
        var w = Weight;
        if (w.shape[dim] % count != 0) throw new ArgumentException($"a kernel of {w.shape[dim]} features along dim {dim} does not split into {count} equal parts", nameof(count));
        using var noGrad = no_grad();
        long size = w.shape[dim] / count;
        weight = new Parameter(w.narrow(dim, index * size, size).clone(), w.requires_grad);
        ConditionallyRegisterParameter(nameof(weight), weight);
        w.Dispose();
        if (dim == 0 && bias is { } b)
        {
            bias = new Parameter(b.narrow(0, index * size, size).clone(), b.requires_grad);
            ConditionallyRegisterParameter(nameof(bias), bias);
            b.Dispose();
        }
    }

    /// <summary>The float kernel, (out, in).</summary>
    /// <exception cref="InvalidOperationException">The layer is quantized: its float kernel was freed.</exception>
    public Parameter Weight => weight ?? throw new InvalidOperationException("this Dense layer is quantized to int8: its float kernel was freed (see QuantizedWeight)");

    /// <summary>The int8 values, (out, in), and float32 scales, (out), of a quantized layer; null while it holds float weights.</summary>
    public (Tensor Values, Tensor Scales)? QuantizedWeight => weight_int8 is null ? null : (weight_int8, weight_scale!);

    /// <summary>Whether the kernel is held as int8.</summary>
    public bool IsQuantized => weight_int8 is not null;

    /// <summary>Bytes the kernel occupies: the float weight, or the int8 values plus the scales (the bias not included).</summary>
    public long KernelBytes => weight_int8 is null
        ? Weight.NumberOfElements * Weight.ElementSize
        : weight_int8.NumberOfElements * weight_int8.ElementSize + weight_scale!.NumberOfElements * weight_scale.ElementSize;

    /// <summary>
    /// Replaces the float kernel with int8 values and per-output-channel scales (see
    /// <see cref="Int8Weights"/>) and frees it. The bias, if any, stays in float.
    /// </summary>
    /// <exception cref="InvalidOperationException">The layer is already quantized.</exception>
    public void QuantizeInt8()
    {
        if (IsQuantized) throw new InvalidOperationException("this Dense layer is already quantized to int8");
        var (values, scales) = Int8Weights.Quantize(Weight);
        ConditionallyRegisterParameter(nameof(weight), (Parameter?)null);
        weight!.Dispose();
        weight = null;
        weight_int8 = values.DetachFromDisposeScope();
        weight_scale = scales.DetachFromDisposeScope();
        register_buffer(nameof(weight_int8), weight_int8);
        register_buffer(nameof(weight_scale), weight_scale);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The layer is quantized and in training mode.</exception>
    public override Tensor forward(Tensor x) => Forward(x, addBias: true); // (..., in) -> (..., out)

    /// <summary>x Wᵀ, plus the bias when <paramref name="addBias"/> (a row-sharded kernel's caller adds it after summing the partial outputs).</summary>
    /// <exception cref="InvalidOperationException">The layer is quantized and in training mode.</exception>
    public Tensor Forward(Tensor x, bool addBias) // (..., in) -> (..., out)
    {
        var y = Kernel(x, addBias ? bias : null);
        if (adapter is null) return y;
        var input = ComputeDtype is { } dtype && x.is_floating_point() ? x.to(dtype) : x;
        return y + adapter.Delta(input, training).to(y.dtype);
    }

    private Tensor Kernel(Tensor x, Tensor? b)
    {
        if (weight_int8 is null)
        {
            return ComputeDtype is { } dtype && x.is_floating_point()
                ? nn.functional.linear(x.to(dtype), weight!.to(dtype), b?.to(dtype)) // mixed precision: float32 master weights cast at use
                : Float32Linear.Linear(x, weight!, b);
        }
        // The int8 values carry no gradient, so training would silently update only biases, norms and embeddings.
        if (training) throw new InvalidOperationException("an int8-quantized model is for inference only: call model.eval(), or train the float checkpoint instead");
        return Int8Weights.Linear(x, weight_int8, weight_scale!, b);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) adapter?.Dispose();
        base.Dispose(disposing);
    }
}
