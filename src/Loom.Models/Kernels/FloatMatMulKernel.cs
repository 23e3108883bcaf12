using System.Runtime.CompilerServices;

namespace Loom.Models.Kernels;

/// <summary>
/// y = x Wᵀ for float32 activations x, (M, K), and a float32 kernel W, (N, K), with few rows of x (decode), on x86
/// CPUs with AVX-512 (or AVX2 and FMA). At batch 1 a matmul is a matrix-vector product bound by the rate at which
/// W streams from memory, so the loop is built for that: the output channels are walked in order and each kernel
/// row is read once, front to back, while every row of x is multiplied against it. The whole kernel is then one
/// sequential stream, which the hardware prefetcher follows; libtorch's oneMKL SGEMV read the same weights at about
/// half the rate on the dev VM (17 against 35 GB/s, <c>loom-bench matvec-stream</c>), and taking 4 channels at a
/// time (4 interleaved streams) was 25% slower than one. The channels are split evenly over the threads.
/// </summary>
/// <remarks>
/// The loops are compiled optimized from the first call (<see cref="MethodImplOptions.AggressiveOptimization"/>):
/// under tiered compilation their first calls would run unoptimized vector code, many times slower. Sums are float32,
/// lane-wise then across lanes, so results differ from libtorch's only by summation order.
/// </remarks>
internal static unsafe class FloatMatMulKernel
{
    private const int RowBlock = 4;            // rows of x multiplied against each kernel row at once
    private const int MinChannelsPerThread = 128; // fewer and a hand-off to another thread costs more than it saves

    /// <summary>
    /// Writes y, (M, N), row-major: y[m, n] = Σₖ x[m, k] w[n, k]. All buffers are contiguous and row-major;
    /// <paramref name="threads"/> (at least 1) bounds the parallelism over output channels.
    /// </summary>
    public static void Multiply(float* x, float* w, float* y, int rows, int inFeatures, int outFeatures, int threads)
    {
        if (!CpuVectors.IsSupported) throw new PlatformNotSupportedException("the float matmul kernel needs AVX-512F or AVX2 with FMA; check CpuVectors.IsSupported first");
        int parts = Math.Clamp(Math.Min(threads, outFeatures / MinChannelsPerThread), 1, outFeatures);
        if (parts == 1)
        {
            Range(x, w, y, rows, inFeatures, outFeatures, 0, outFeatures);
            return;
        }
        var (xs, ws, ys) = ((nint)x, (nint)w, (nint)y);
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, part =>
        {
            long first = (long)outFeatures * part / parts, end = (long)outFeatures * (part + 1) / parts;
            Range((float*)xs, (float*)ws, (float*)ys, rows, inFeatures, outFeatures, (int)first, (int)end);
        });
    }

    // The widest vectors this CPU has.
    private static void Range(float* x, float* w, float* y, int rows, int k, int n, int first, int end)
    {
        if (CpuVectors.HasAvx512) Range<Avx512, System.Runtime.Intrinsics.Vector512<float>>(x, w, y, rows, k, n, first, end);
        else Range<Avx2Fma, System.Runtime.Intrinsics.Vector256<float>>(x, w, y, rows, k, n, first, end);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Range<TSimd, TVector>(float* x, float* w, float* y, int rows, int k, int n, int first, int end)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        for (int c = first; c < end; c++)
        {
            float* row = w + (nint)c * k;
            if (rows == 1)
            {
                y[c] = RowDot.Dot<TSimd, TVector, Float32Weights, float>(x, row, k);
                continue;
            }
            // The kernel row (K floats) is read from memory by the first block and from L1 by the others.
            for (int m = 0; m < rows; m += RowBlock)
            {
                int count = Math.Min(RowBlock, rows - m);
                float* x0 = x + (nint)m * k;
                // A short block repeats its last row (computed, not written): one loop serves 2, 3 and 4 rows.
                float* x1 = x0 + (nint)Math.Min(1, count - 1) * k, x2 = x0 + (nint)Math.Min(2, count - 1) * k, x3 = x0 + (nint)Math.Min(3, count - 1) * k;
                var (s0, s1, s2, s3) = Dot4<TSimd, TVector>(x0, x1, x2, x3, row, k);
                float* yc = y + (nint)m * n + c;
                yc[0] = s0;
                if (count > 1) yc[n] = s1;
                if (count > 2) yc[2 * (nint)n] = s2;
                if (count > 3) yc[3 * (nint)n] = s3;
            }
        }
    }

    // Four rows of x against one kernel row: each loaded weight vector serves all four.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float, float, float) Dot4<TSimd, TVector>(float* x0, float* x1, float* x2, float* x3, float* row, int k)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        TVector a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + TSimd.Lanes <= k; i += TSimd.Lanes)
        {
            var v = TSimd.Load(row + i);
            a0 = TSimd.MultiplyAdd(v, TSimd.Load(x0 + i), a0);
            a1 = TSimd.MultiplyAdd(v, TSimd.Load(x1 + i), a1);
            a2 = TSimd.MultiplyAdd(v, TSimd.Load(x2 + i), a2);
            a3 = TSimd.MultiplyAdd(v, TSimd.Load(x3 + i), a3);
        }
        float s0 = TSimd.Sum(a0), s1 = TSimd.Sum(a1), s2 = TSimd.Sum(a2), s3 = TSimd.Sum(a3);
        for (; i < k; i++)
        {
            float wi = row[i];
            s0 += x0[i] * wi;
            s1 += x1[i] * wi;
            s2 += x2[i] * wi;
            s3 += x3[i] * wi;
        }
        return (s0, s1, s2, s3);
    }
}
