using Loom.Models.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// E independent dense kernels applied to E groups of rows at once: y[e] = x[e] W[e]ᵀ (+ b[e]) for
/// x of shape (E, C, in), as one batched matmul. Each expert's kernel has <see cref="Dense"/>'s
/// (out, in) layout and initialisation N(0, 1/sqrt(fan_in)), so W is (E, out, in). After
/// <see cref="QuantizeInt8"/> the kernels are held as int8 values with one float32 scale per
/// (expert, output channel) (state keys <c>weight_int8</c>, (E, out, in), and <c>weight_scale</c>,
/// (E, out), instead of <c>weight</c>) and the layer is for inference only.
/// </summary>
public sealed class ExpertDense : nn.Module<Tensor, Tensor>, Loom.Models.Quantization.IQuantizableKernel
{
    // Field names are the state-dict keys: TorchSharp's module.to(device) finds fields by them.
    private Parameter? weight;          // (E, out, in), float; null once quantized
    private readonly Parameter? bias;   // (E, out)
    private Tensor? weight_int8;        // (E, out, in), int8; quantized only
    private Tensor? weight_scale;       // (E, out), float32; quantized only

    /// <summary>Creates the kernels on <paramref name="device"/> (the meta device builds shapes only);
    /// initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public ExpertDense(int numExperts, int inFeatures, int outFeatures, bool useBias, Device? device = null, Generator? generator = null) : base(nameof(ExpertDense))
    {
        weight = new Parameter(empty(numExperts, outFeatures, inFeatures, device: device));
        bias = useBias ? new Parameter(zeros(numExperts, outFeatures, device: device)) : null;
        Initializers.Normal(weight, 1.0 / Math.Sqrt(inFeatures), generator);
        RegisterComponents();
    }

    /// <summary>The float kernels, (E, out, in).</summary>
    /// <exception cref="InvalidOperationException">The layer is quantized: its float kernels were freed.</exception>
    public Parameter Weight => weight ?? throw new InvalidOperationException("this ExpertDense layer is quantized to int8: its float kernels were freed (see QuantizedWeight)");

    /// <summary>The biases, (E, out); null without biases.</summary>
    public Parameter? Bias => bias;

    /// <summary>The int8 values, (E, out, in), and float32 scales, (E, out), of a quantized layer; null while it holds float weights.</summary>
    public (Tensor Values, Tensor Scales)? QuantizedWeight => weight_int8 is null ? null : (weight_int8, weight_scale!);

    /// <summary>Whether the kernels are held as int8.</summary>
    public bool IsQuantized => weight_int8 is not null;

    /// <summary>Bytes the kernels occupy: the float weights, or the int8 values plus the scales (the biases not included).</summary>
    public long KernelBytes => weight_int8 is null
        ? Weight.NumberOfElements * Weight.ElementSize
        : weight_int8.NumberOfElements * weight_int8.ElementSize + weight_scale!.NumberOfElements * weight_scale.ElementSize;

    /// <summary>The kernels, (E, out, in), in <paramref name="dtype"/>: the float weights, or the dequantized int8 values (for reference computations).</summary>
    public Tensor KernelAs(ScalarType dtype) => weight_int8 is null
        ? Weight.to(dtype)
        : weight_int8.to(dtype) * weight_scale!.to(dtype).unsqueeze(-1); // (E, out, in)

    /// <summary>
    /// Replaces the float kernels with int8 values and per-(expert, output-channel) scales and frees
    /// them. Every expert row is an output channel of its own, so the (E, out, in) kernel is quantized
    /// as one (E · out, in) matrix by <see cref="Int8Weights.Quantize"/>. The biases stay in float.
    /// </summary>
    /// <exception cref="InvalidOperationException">The layer is already quantized.</exception>
    public void QuantizeInt8()
    {
        if (IsQuantized) throw new InvalidOperationException("this ExpertDense layer is already quantized to int8");
        var w = Weight;
        long experts = w.shape[0], outFeatures = w.shape[1], inFeatures = w.shape[2];
        Tensor values, scales;
        using (var scope = NewDisposeScope())
        {
            var (rows, rowScales) = Int8Weights.Quantize(w.detach().reshape(experts * outFeatures, inFeatures)); // (E·out, in), (E·out)
            values = rows.reshape(experts, outFeatures, inFeatures).contiguous().DetachFromDisposeScope();       // (E, out, in)
            scales = rowScales.reshape(experts, outFeatures).contiguous().DetachFromDisposeScope();              // (E, out)
        }
        ConditionallyRegisterParameter(nameof(weight), (Parameter?)null);
        weight!.Dispose();
        weight = null;
        weight_int8 = values;
        weight_scale = scales;
        register_buffer(nameof(weight_int8), weight_int8);
        register_buffer(nameof(weight_scale), weight_scale);
    }

    /// <inheritdoc />
    public ScalarType? ComputeDtype { get; set; }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The layer is quantized and in training mode.</exception>
    public override Tensor forward(Tensor x) // (E, C, in) -> (E, C, out)
    {
        Tensor y;
        if (weight_int8 is null)
        {
            if (ComputeDtype is { } dtype && x.is_floating_point()) x = x.to(dtype);  // mixed precision: cast input and kernel at use
            y = x.bmm(weight!.to(x.dtype).transpose(1, 2));                         // (E, C, out)
        }
        else
        {
            // The int8 values carry no gradient, so training would silently update only the router and biases.
            if (training) throw new InvalidOperationException("an int8-quantized model is for inference only: call model.eval(), or train the float checkpoint instead");
            // As in Int8Weights.Linear, x Wᵀ = (x qᵀ) · scale: scale the (E, C, out) output, not the kernel.
            y = x.bmm(weight_int8.to(x.dtype).transpose(1, 2)) * weight_scale!.to(x.dtype).unsqueeze(1); // (E, C, out)
        }
        return bias is null ? y : y + bias.to(x.dtype).unsqueeze(1);               // (E, C, out)
    }
}
