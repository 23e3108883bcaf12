using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace Loom.Models.Kernels;

/// <summary>
/// The vector operations Loom's hand-written CPU kernels use, for one vector width; each kernel is written once as
/// a generic over <see cref="ISimd{TVector}"/> and the JIT compiles it once per width (<see cref="Avx512"/> or
/// <see cref="Avx2Fma"/>).
/// </summary>
internal unsafe interface ISimd<TVector>
    where TVector : struct
{
    /// <summary>Floats in a vector.</summary>
    static abstract int Lanes { get; }

    /// <summary>Lanes int8 values at <paramref name="p"/>, widened to float.</summary>
    static abstract TVector Widen(sbyte* p);

    static abstract TVector Load(float* p);

    /// <summary>a · b + c, fused.</summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector c);

    static abstract TVector Add(TVector a, TVector b);

    static abstract float Sum(TVector v);
}

/// <summary>16 floats; int8 is widened by sign-extending 16 bytes (vpmovsxbd zmm) and converting (vcvtdq2ps).</summary>
internal readonly unsafe struct Avx512 : ISimd<Vector512<float>>
{
    public static int Lanes => 16;
    public static Vector512<float> Widen(sbyte* p) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(p)));
    public static Vector512<float> Load(float* p) => Vector512.Load(p);
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Avx512F.FusedMultiplyAdd(a, b, c);
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    public static float Sum(Vector512<float> v) => Vector512.Sum(v);
}

/// <summary>8 floats; int8 is widened by sign-extending 8 bytes (vpmovsxbd ymm) and converting (vcvtdq2ps).</summary>
internal readonly unsafe struct Avx2Fma : ISimd<Vector256<float>>
{
    public static int Lanes => 8;
    public static Vector256<float> Widen(sbyte* p) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
    public static Vector256<float> Load(float* p) => Vector256.Load(p);
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Fma.MultiplyAdd(a, b, c);
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    public static float Sum(Vector256<float> v) => Vector256.Sum(v);
}

/// <summary>How a kernel's weights of one element type are read as float vectors (float32 loaded, int8 widened).</summary>
internal unsafe interface IWeightType<TWeight>
    where TWeight : unmanaged
{
    /// <summary>TSimd.Lanes weights at <paramref name="p"/> as floats.</summary>
    static abstract TVector Load<TSimd, TVector>(TWeight* p)
        where TSimd : ISimd<TVector>
        where TVector : struct;

    /// <summary>One weight as a float.</summary>
    static abstract float Scalar(TWeight weight);
}

/// <summary>float32 weights, loaded as they are.</summary>
internal readonly unsafe struct Float32Weights : IWeightType<float>
{
    public static TVector Load<TSimd, TVector>(float* p) where TSimd : ISimd<TVector> where TVector : struct => TSimd.Load(p);
    public static float Scalar(float weight) => weight;
}

/// <summary>int8 weight values, widened to float in registers (their scales are the caller's).</summary>
internal readonly unsafe struct Int8WeightValues : IWeightType<sbyte>
{
    public static TVector Load<TSimd, TVector>(sbyte* p) where TSimd : ISimd<TVector> where TVector : struct => TSimd.Widen(p);
    public static float Scalar(sbyte weight) => weight;
}

/// <summary>The dot product both matmul kernels run for one row of x against one kernel row.</summary>
internal static unsafe class RowDot
{
    /// <summary>
    /// Σ x[i] w[i] over <paramref name="k"/> elements, the kernel row read front to back; 4 accumulators, so the
    /// FMAs' latency overlaps. Sums are float32, lane-wise then across lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot<TSimd, TVector, TWeights, TWeight>(float* x, TWeight* w, int k)
        where TSimd : ISimd<TVector>
        where TVector : struct
        where TWeights : IWeightType<TWeight>
        where TWeight : unmanaged
    {
        int lanes = TSimd.Lanes;
        TVector a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 4 * lanes <= k; i += 4 * lanes)
        {
            a0 = TSimd.MultiplyAdd(TWeights.Load<TSimd, TVector>(w + i), TSimd.Load(x + i), a0);
            a1 = TSimd.MultiplyAdd(TWeights.Load<TSimd, TVector>(w + i + lanes), TSimd.Load(x + i + lanes), a1);
            a2 = TSimd.MultiplyAdd(TWeights.Load<TSimd, TVector>(w + i + 2 * lanes), TSimd.Load(x + i + 2 * lanes), a2);
            a3 = TSimd.MultiplyAdd(TWeights.Load<TSimd, TVector>(w + i + 3 * lanes), TSimd.Load(x + i + 3 * lanes), a3);
        }
        for (; i + lanes <= k; i += lanes) a0 = TSimd.MultiplyAdd(TWeights.Load<TSimd, TVector>(w + i), TSimd.Load(x + i), a0);
        float sum = TSimd.Sum(TSimd.Add(TSimd.Add(a0, a1), TSimd.Add(a2, a3)));
        for (; i < k; i++) sum += x[i] * TWeights.Scalar(w[i]);
        return sum;
    }
}

/// <summary>What the CPU kernels share: whether this CPU has their vectors, and tensor memory addresses.</summary>
internal static partial class CpuVectors
{
    /// <summary>Whether this CPU runs the kernels: x86 with AVX-512F, or AVX2 and FMA (elsewhere callers keep libtorch's path).</summary>
    public static bool IsSupported => Avx512F.IsSupported || (Avx2.IsSupported && Fma.IsSupported);

    /// <summary>Whether the kernels use 16-float vectors (<see cref="Avx512"/>) rather than 8-float ones (<see cref="Avx2Fma"/>).</summary>
    public static bool HasAvx512 => Avx512F.IsSupported;

    /// <summary>
    /// The address of a CPU tensor's first element (<c>tensor.data_ptr()</c>: a view's storage offset applied), which
    /// must be contiguous unless <paramref name="requireContiguous"/> is false (the caller then walks its strides); TorchSharp 0.107 keeps
    /// its accessor internal, so this calls the LibTorchSharp export that it uses (as Loom.Distributed does).
    /// </summary>
    public static IntPtr DataPointer(Tensor tensor, bool requireContiguous = true)
    {
        if ((requireContiguous && !tensor.is_contiguous()) || tensor.device_type != TorchSharp.DeviceType.CPU) throw new ArgumentException("expected a contiguous CPU tensor", nameof(tensor));
        var pointer = THSTensor_data(tensor.Handle);
        if (pointer == IntPtr.Zero) throw new InvalidOperationException($"libtorch gave no data pointer for a {tensor.dtype} tensor of shape [{string.Join(", ", tensor.shape)}]");
        return pointer;
    }

    /// <summary>
    /// The sizes of <paramref name="tensor"/>'s dimensions, read one by one: TorchSharp's <c>shape</c> property costs
    /// about 1.5 µs a call (a native callback allocates the array), <c>size(i)</c> about 0.1 µs, and a decode step
    /// reads shapes hundreds of times.
    /// </summary>
    public static long[] Shape(Tensor tensor)
    {
        var sizes = new long[tensor.dim()];
        for (int i = 0; i < sizes.Length; i++) sizes[i] = tensor.size(i);
        return sizes;
    }

    [LibraryImport("LibTorchSharp")]
    private static partial IntPtr THSTensor_data(IntPtr tensor);
}
