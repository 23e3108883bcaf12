using Loom.Models.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Quantization;

/// <summary>
/// Symmetric per-output-channel int8 quantization of a linear kernel W, (out, in):
/// scale[o] = max|W[o, :]| / 127 and q[o, i] = round(W[o, i] / scale[o]) in [-127, 127], so that
/// W ≈ q · scale[:, None] with an error of at most scale[o] / 2 per element. -128 is never used,
/// which keeps the range symmetric and negation exact.
/// </summary>
public static class Int8Weights
{
    /// <summary>Largest magnitude of a quantized value.</summary>
    public const int MaxLevel = 127;

    /// <summary>
    /// Quantizes <paramref name="weight"/>, (out, in), into int8 values, (out, in), and float32
    /// scales, (out). A row of zeros gets scale 0 and all-zero values, so it dequantizes exactly.
    /// </summary>
    public static (Tensor Values, Tensor Scales) Quantize(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.dim() != 2) throw new ArgumentException($"expected a 2-D kernel (out, in), got shape [{string.Join(", ", weight.shape)}]", nameof(weight));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w = weight.detach().to(float32);                                  // (out, in)
        var scales = w.abs().amax(new long[] { 1 }) / MaxLevel;               // (out)
        var divisor = where(scales > 0, scales, ones_like(scales));           // (out), zero rows divide by 1: 0 / 1 = 0
        var values = (w / divisor.unsqueeze(1)).round().clamp(-MaxLevel, MaxLevel).to(int8); // (out, in)
        return (values.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope());
    }

    /// <summary>The float kernel, (out, in), that <paramref name="values"/> and <paramref name="scales"/> stand for, in <paramref name="dtype"/>.</summary>
    public static Tensor Dequantize(Tensor values, Tensor scales, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(scales);
        return values.to(dtype) * scales.to(dtype).unsqueeze(1); // (out, in)
    }

    /// <summary>
    /// Rows of activations up to which <see cref="Linear"/> multiplies by the int8 kernel directly (an AVX-512 or
    /// AVX2 kernel that widens int8 to float in registers); above it, the widened kernel's float matmul is faster (see
    /// <c>loom-bench int8-linear</c>), since widening costs one pass over the kernel however many rows share it.
    /// </summary>
    public const int DirectKernelMaxRows = 16;

    /// <summary>
    /// y = x Wᵀ (+ b) with W held as int8 <paramref name="values"/> and <paramref name="scales"/>.
    /// Since W = q · diag(scale) row-wise, x Wᵀ = (x qᵀ) · scale: the scale is applied to the output,
    /// (..., out), instead of to the (out, in) kernel, saving a full pass over the weights.
    /// Decode-sized inputs on the CPU (at most <see cref="DirectKernelMaxRows"/> rows of float32 activations, no
    /// gradient) go to <see cref="DirectLinear"/>, which reads each weight as one byte; everything else (CUDA
    /// tensors, prefill, other dtypes, a CPU without AVX2) widens q to the activations' dtype for a float
    /// matmul (<see cref="WidenedLinear"/>).
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor values, Tensor scales, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(scales);
        var y = UsesDirectKernel(x, values) ? DirectLinear(x, values, scales) : WidenedLinear(x, values, scales); // (..., out)
        return bias is null ? y : bias.dtype == y.dtype ? y.add_(bias, RootedScalars.One) : y + bias.to(x.dtype);
    }

    /// <summary>
    /// Whether this CPU runs <see cref="DirectLinear"/>: x86 with AVX-512F, or with AVX2 and FMA. Elsewhere (Arm,
    /// older x86) <see cref="Linear"/> always widens.
    /// </summary>
    public static bool DirectKernelIsSupported => Int8MatMulKernel.IsSupported;

    /// <summary>
    /// Whether <see cref="Linear"/> takes the direct int8 kernel for these operands: both on the CPU, a float32
    /// <paramref name="x"/> that needs no gradient (the kernel has none) with at most
    /// <see cref="DirectKernelMaxRows"/> rows, an int8 (out, in) kernel, and <see cref="DirectKernelIsSupported"/>.
    /// </summary>
    public static bool UsesDirectKernel(Tensor x, Tensor values)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(values);
        return DirectKernelTakes(x, values) && x.NumberOfElements / x.size(-1) <= DirectKernelMaxRows; // size(i): the shape property costs ~1.5 µs a call
    }

    // Everything UsesDirectKernel checks but the row count.
    private static bool DirectKernelTakes(Tensor x, Tensor values)
    {
        if (x.device_type != DeviceType.CPU || values.device_type != DeviceType.CPU) return false;
        if (x.dtype != ScalarType.Float32) return false;
        if (values.dtype != ScalarType.Int8 || values.dim() != 2 || x.dim() < 1 || x.size(-1) != values.size(1)) return false;
        if (x.requires_grad && is_grad_enabled()) return false;
        if (x.NumberOfElements is 0 or > int.MaxValue || values.NumberOfElements is 0 || values.size(0) > int.MaxValue) return false;
        return Int8MatMulKernel.IsSupported;
    }

    /// <summary>
    /// x (q · scale)ᵀ read straight from the int8 kernel, whatever the number of rows: blocks of 16 weights are
    /// widened to float in AVX-512 (or AVX2) registers and multiplied there, over output channels split across
    /// <c>torch.get_num_threads()</c> threads. It is what <see cref="Linear"/> does for decode-sized inputs,
    /// public so that benchmarks can measure it at any size; <see cref="ReferenceLinear"/> is its reference (they
    /// differ by float32 summation order only).
    /// </summary>
    /// <exception cref="NotSupportedException">
    /// The operands are not a float32 CPU <paramref name="x"/> without gradient and an int8 (out, in) CPU kernel
    /// with a matching width, or <see cref="DirectKernelIsSupported"/> is false.
    /// </exception>
    public static unsafe Tensor DirectLinear(Tensor x, Tensor values, Tensor scales)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(scales);
        if (!DirectKernelTakes(x, values))
        {
            throw new NotSupportedException($"the int8 kernel takes a float32 CPU input without gradient and an int8 CPU kernel of the same width on an x86 CPU with AVX-512F or AVX2 and FMA; got x [{string.Join(", ", x.shape)}] {x.dtype} on {x.device_type}, kernel [{string.Join(", ", values.shape)}] {values.dtype} on {values.device_type}");
        }
        using var scope = NewDisposeScope();
        long inFeatures = x.size(-1), outFeatures = values.size(0);
        // Copies only where a view is not laid out row by row (a decode step's operands already are).
        var a = x.is_contiguous() ? x : x.contiguous();                                   // (..., in)
        var q = values.is_contiguous() ? values : values.contiguous();                    // (out, in)
        var s = scales.dtype == ScalarType.Float32 && scales.is_contiguous() ? scales : scales.to(ScalarType.Float32).contiguous(); // (out)
        var shape = CpuVectors.Shape(x);
        shape[^1] = outFeatures;
        var y = empty(shape, ScalarType.Float32);                                         // (..., out)
        Int8MatMulKernel.Multiply(
            (float*)CpuVectors.DataPointer(a), (sbyte*)CpuVectors.DataPointer(q), (float*)CpuVectors.DataPointer(s),
            (float*)CpuVectors.DataPointer(y), (int)(x.NumberOfElements / inFeatures), (int)inFeatures, (int)outFeatures, Math.Max(1, get_num_threads()));
        return y.MoveToOuterDisposeScope();                                                // (..., out)
    }

    /// <summary>
    /// x qᵀ · scale with q widened to <paramref name="x"/>'s dtype for a float matmul: the path for prefill, CUDA
    /// and any input <see cref="UsesDirectKernel"/> turns away. Memory is saved at rest, not compute.
    /// </summary>
    public static Tensor WidenedLinear(Tensor x, Tensor values, Tensor scales)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(scales);
        return nn.functional.linear(x, values.to(x.dtype)) * scales.to(x.dtype); // (..., out)
    }

    /// <summary>Reference for <see cref="Linear"/>: dequantizes the whole kernel, then applies it.</summary>
    public static Tensor ReferenceLinear(Tensor x, Tensor values, Tensor scales, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(x);
        return nn.functional.linear(x, Dequantize(values, scales, x.dtype), bias?.to(x.dtype)); // (..., out)
    }
}
