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
    private readonly Parameter? bias;   // (out)
    private Tensor? weight_int8;        // (out, in), int8; quantized only
    private Tensor? weight_scale;       // (out), float32; quantized only

    /// <summary>Creates the kernel on <paramref name="device"/> (the meta device builds shapes only);
    /// initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public Dense(int inFeatures, int outFeatures, bool useBias, Device? device = null, Generator? generator = null) : base(nameof(Dense))
    {
        weight = new Parameter(empty(outFeatures, inFeatures, device: device));
        bias = useBias ? new Parameter(zeros(outFeatures, device: device)) : null;
        Initializers.Normal(weight, 1.0 / Math.Sqrt(inFeatures), generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    /// <remarks>With a compute dtype, the output is in it too (the caller's residual add promotes it back to float32).</remarks>
    public ScalarType? ComputeDtype { get; set; }

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
    public override Tensor forward(Tensor x) // (..., in) -> (..., out)
    {
        if (weight_int8 is null)
        {
            return ComputeDtype is { } dtype && x.is_floating_point()
                ? nn.functional.linear(x.to(dtype), weight!.to(dtype), bias?.to(dtype)) // mixed precision: float32 master weights cast at use
                : nn.functional.linear(x, weight!, bias);
        }
        // The int8 values carry no gradient, so training would silently update only biases, norms and embeddings.
        if (training) throw new InvalidOperationException("an int8-quantized model is for inference only: call model.eval(), or train the float checkpoint instead");
        return Int8Weights.Linear(x, weight_int8, weight_scale!, bias);
    }
}
