using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Kernels;

/// <summary>
/// y = x Wᵀ (+ b) for float32 kernels, routed by size: decode-sized inputs on the CPU (at most
/// <see cref="DirectKernelMaxRows"/> rows of float32 activations, no gradient) go to <see cref="DirectLinear"/>,
/// Loom's own matrix-vector kernel, which streams W from memory at about twice the rate of libtorch's oneMKL SGEMV
/// on the dev VM (<c>loom-bench matvec-stream</c>); everything else (training, prefill, CUDA, other dtypes, a CPU
/// without AVX2) is libtorch's <c>nn.functional.linear</c>, which is also the reference the kernel is tested against.
/// </summary>
public static class Float32Linear
{

    /// <summary>
    /// Rows of activations up to which <see cref="Linear"/> takes Loom's kernel. The kernel reads W once for all rows;
    /// above this, libtorch's blocked SGEMM does more multiplications per weight read than its row-at-a-time loop
    /// (<c>loom-bench matvec-stream --rows</c>).
    /// </summary>
    public const int DirectKernelMaxRows = 8;

    /// <summary>y = x Wᵀ (+ b), (..., in) → (..., out), through Loom's kernel when <see cref="UsesDirectKernel"/>, else libtorch.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        if (!UsesDirectKernel(x, weight)) return nn.functional.linear(x, weight, bias);
        var y = DirectLinear(x, weight); // (..., out)
        return bias is null ? y : y.add_(bias, RootedScalars.One); // a rooted alpha: see RootedScalars
    }

    /// <summary>Whether this CPU runs <see cref="DirectLinear"/>: x86 with AVX-512F, or with AVX2 and FMA.</summary>
    public static bool DirectKernelIsSupported => CpuVectors.IsSupported;

    /// <summary>
    /// Whether <see cref="Linear"/> takes Loom's kernel for these operands: both contiguous float32 tensors on the CPU,
    /// no gradient to record (gradient mode off, or neither needs one), an (out, in) kernel, at most
    /// <see cref="DirectKernelMaxRows"/> rows of x, and <see cref="DirectKernelIsSupported"/>.
    /// </summary>
    public static bool UsesDirectKernel(Tensor x, Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        return DirectKernelTakes(x, weight) && x.NumberOfElements / x.size(-1) <= DirectKernelMaxRows;
    }

    // Everything UsesDirectKernel checks but the row count.
    private static bool DirectKernelTakes(Tensor x, Tensor weight)
    {
        if (!CpuVectors.IsSupported) return false;
        if (x.device_type != DeviceType.CPU || weight.device_type != DeviceType.CPU) return false;
        if (x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32) return false;
        if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1)) return false;
        if (is_grad_enabled() && (x.requires_grad || weight.requires_grad)) return false;
        if (x.NumberOfElements is 0 or > int.MaxValue || weight.NumberOfElements is 0 or > int.MaxValue) return false;
        return x.is_contiguous() && weight.is_contiguous();
    }

    /// <summary>
    /// x Wᵀ by Loom's kernel, whatever the number of rows, over output channels split across
    /// <paramref name="threads"/> threads (null: <c>torch.get_num_threads()</c>). It is what <see cref="Linear"/> does for decode-sized inputs, public so
    /// that benchmarks and tests can run it at any size; it differs from libtorch's product by float32 summation order.
    /// </summary>
    /// <exception cref="NotSupportedException">
    /// The operands are not contiguous float32 CPU tensors without gradient, x (..., in) and W (out, in), or
    /// <see cref="DirectKernelIsSupported"/> is false.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is less than 1.</exception>
    public static unsafe Tensor DirectLinear(Tensor x, Tensor weight, int? threads = null)
    {
        if (threads is < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "give at least 1 thread, or null for torch.get_num_threads()");
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        if (!DirectKernelTakes(x, weight))
        {
            throw new NotSupportedException($"Loom's float kernel takes contiguous float32 CPU tensors without gradient, x (..., in) and W (out, in), on an x86 CPU with AVX-512F or AVX2 and FMA; got x [{string.Join(", ", x.shape)}] {x.dtype} on {x.device_type}, W [{string.Join(", ", weight.shape)}] {weight.dtype} on {weight.device_type}");
        }
        long inFeatures = x.size(-1), outFeatures = weight.size(0);
        var shape = CpuVectors.Shape(x);
        shape[^1] = outFeatures;
        var y = empty(shape, ScalarType.Float32);                                           // (..., out)
        FloatMatMulKernel.Multiply(
            (float*)CpuVectors.DataPointer(x), (float*)CpuVectors.DataPointer(weight), (float*)CpuVectors.DataPointer(y),
            (int)(x.NumberOfElements / inFeatures), (int)inFeatures, (int)outFeatures, threads ?? Math.Max(1, get_num_threads()));
        return y;
    }
}
