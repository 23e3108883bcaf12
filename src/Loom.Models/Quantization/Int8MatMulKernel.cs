using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Loom.Models.Kernels;

namespace Loom.Models.Quantization;

/// <summary>
/// y = x qᵀ · scale for float32 activations x, (M, K), and an int8 kernel q, (N, K), with per-output-channel scales,
/// (N), on x86 CPUs with AVX-512 (or AVX2 and FMA): each block of 16 (8) int8 weights is loaded as 16 (8) bytes and
/// widened to float in registers (vpmovsxbd, vcvtdq2ps), so a decode step reads 1 byte per weight where a float kernel reads 4. One row
/// of x (batch-1 decode) walks the kernel row by row, one sequential stream (<see cref="RowDot"/>, as the float kernel
/// does); more rows take output channels 4 at a time and rows of x 4 at a time (16 accumulators), so each widened
/// weight block serves up to 4 rows; the channel blocks are split evenly over the threads. Sums are float32, lane-wise then across
/// lanes, so results differ from a float matmul's only by summation order.
/// </summary>
/// <remarks>
/// The loops are compiled optimized from the first call (<see cref="MethodImplOptions.AggressiveOptimization"/>):
/// under tiered compilation their first calls would run unoptimized vector code, many times slower.
/// libtorch's own <c>aten::_weight_int8pack_mm</c> does the same product but, for float32 activations, ran 10×
/// slower than the float matmul here (<c>loom-bench int8-linear</c>), so Loom uses this kernel instead.
/// </remarks>
internal static unsafe class Int8MatMulKernel
{
    private const int ChannelBlock = 4; // output channels per block
    private const int RowBlock = 4;     // rows of x per block

    /// <summary>Whether this CPU runs the kernel: x86 with AVX-512F, or AVX2 and FMA (elsewhere callers keep the widening path).</summary>
    public static bool IsSupported => CpuVectors.IsSupported;

    /// <summary>
    /// Writes y, (M, N), row-major: y[m, n] = scales[n] · Σₖ x[m, k] q[n, k]. All buffers are contiguous and
    /// row-major; <paramref name="threads"/> (at least 1) bounds the parallelism over output channels.
    /// </summary>
    public static void Multiply(float* x, sbyte* q, float* scales, float* y, int rows, int inFeatures, int outFeatures, int threads)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("the int8 matmul kernel needs AVX-512F or AVX2 with FMA; check IsSupported first");
        int blocks = (outFeatures + ChannelBlock - 1) / ChannelBlock;
        int parts = Math.Clamp(Math.Min(threads, blocks / 8), 1, blocks); // at least 8 channel blocks a thread, or it is not worth a hand-off
        if (parts == 1)
        {
            Range(x, q, scales, y, rows, inFeatures, outFeatures, 0, blocks);
            return;
        }
        var (xs, qs, ss, ys) = ((nint)x, (nint)q, (nint)scales, (nint)y);
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, part =>
        {
            long first = (long)blocks * part / parts, end = (long)blocks * (part + 1) / parts;
            Range((float*)xs, (sbyte*)qs, (float*)ss, (float*)ys, rows, inFeatures, outFeatures, (int)first, (int)end);
        });
    }

    // The widest vectors this CPU has.
    private static void Range(float* x, sbyte* q, float* scales, float* y, int rows, int k, int n, int firstBlock, int endBlock)
    {
        if (CpuVectors.HasAvx512) Range<Avx512, Vector512<float>>(x, q, scales, y, rows, k, n, firstBlock, endBlock);
        else Range<Avx2Fma, Vector256<float>>(x, q, scales, y, rows, k, n, firstBlock, endBlock);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Range<TSimd, TVector>(float* x, sbyte* q, float* scales, float* y, int rows, int k, int n, int firstBlock, int endBlock)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        for (int b = firstBlock; b < endBlock; b++)
        {
            int c = b * ChannelBlock;
            sbyte* qc = q + (nint)c * k;
            if (rows == 1)
            {
                // One row: each channel's kernel row is read front to back, one sequential stream over the whole
                // kernel, which the hardware prefetcher follows better than 4 interleaved rows (see FloatMatMulKernel).
                for (int j = c; j < Math.Min(c + ChannelBlock, n); j++) y[j] = RowDot.Dot<TSimd, TVector, Int8WeightValues, sbyte>(x, q + (nint)j * k, k) * scales[j];
            }
            else if (c + ChannelBlock <= n)
            {
                int m = 0;
                for (; m + RowBlock <= rows; m += RowBlock) Block4x4<TSimd, TVector>(x + (nint)m * k, qc, k, y + (nint)m * n + c, n, scales + c);
                for (; m < rows; m++) Block1x4<TSimd, TVector>(x + (nint)m * k, qc, k, y + (nint)m * n + c, scales + c);
            }
            else
            {
                for (int j = c; j < n; j++)
                {
                    for (int m = 0; m < rows; m++) y[(nint)m * n + j] = RowDot.Dot<TSimd, TVector, Int8WeightValues, sbyte>(x + (nint)m * k, q + (nint)j * k, k) * scales[j];
                }
            }
        }
    }

    // One row of x against 4 channels: 4 accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block1x4<TSimd, TVector>(float* x, sbyte* q, int k, float* y, float* scales)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        sbyte* q0 = q, q1 = q + k, q2 = q + 2 * (nint)k, q3 = q + 3 * (nint)k;
        TVector a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + TSimd.Lanes <= k; i += TSimd.Lanes)
        {
            var xv = TSimd.Load(x + i);
            a0 = TSimd.MultiplyAdd(TSimd.Widen(q0 + i), xv, a0);
            a1 = TSimd.MultiplyAdd(TSimd.Widen(q1 + i), xv, a1);
            a2 = TSimd.MultiplyAdd(TSimd.Widen(q2 + i), xv, a2);
            a3 = TSimd.MultiplyAdd(TSimd.Widen(q3 + i), xv, a3);
        }
        Finish<TSimd, TVector>(x, q0, q1, q2, q3, i, k, y, scales, a0, a1, a2, a3);
    }

    // 4 rows of x against 4 channels: each widened weight block is used 4 times, 16 accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x4<TSimd, TVector>(float* x, sbyte* q, int k, float* y, int ldy, float* scales)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        sbyte* q0 = q, q1 = q + k, q2 = q + 2 * (nint)k, q3 = q + 3 * (nint)k;
        float* x0 = x, x1 = x + k, x2 = x + 2 * (nint)k, x3 = x + 3 * (nint)k;
        TVector a00 = default, a01 = default, a02 = default, a03 = default;
        TVector a10 = default, a11 = default, a12 = default, a13 = default;
        TVector a20 = default, a21 = default, a22 = default, a23 = default;
        TVector a30 = default, a31 = default, a32 = default, a33 = default;
        int i = 0;
        for (; i + TSimd.Lanes <= k; i += TSimd.Lanes)
        {
            var w0 = TSimd.Widen(q0 + i);
            var w1 = TSimd.Widen(q1 + i);
            var w2 = TSimd.Widen(q2 + i);
            var w3 = TSimd.Widen(q3 + i);
            var v = TSimd.Load(x0 + i);
            a00 = TSimd.MultiplyAdd(w0, v, a00);
            a01 = TSimd.MultiplyAdd(w1, v, a01);
            a02 = TSimd.MultiplyAdd(w2, v, a02);
            a03 = TSimd.MultiplyAdd(w3, v, a03);
            v = TSimd.Load(x1 + i);
            a10 = TSimd.MultiplyAdd(w0, v, a10);
            a11 = TSimd.MultiplyAdd(w1, v, a11);
            a12 = TSimd.MultiplyAdd(w2, v, a12);
            a13 = TSimd.MultiplyAdd(w3, v, a13);
            v = TSimd.Load(x2 + i);
            a20 = TSimd.MultiplyAdd(w0, v, a20);
            a21 = TSimd.MultiplyAdd(w1, v, a21);
            a22 = TSimd.MultiplyAdd(w2, v, a22);
            a23 = TSimd.MultiplyAdd(w3, v, a23);
            v = TSimd.Load(x3 + i);
            a30 = TSimd.MultiplyAdd(w0, v, a30);
            a31 = TSimd.MultiplyAdd(w1, v, a31);
            a32 = TSimd.MultiplyAdd(w2, v, a32);
            a33 = TSimd.MultiplyAdd(w3, v, a33);
        }
        Finish<TSimd, TVector>(x0, q0, q1, q2, q3, i, k, y, scales, a00, a01, a02, a03);
        Finish<TSimd, TVector>(x1, q0, q1, q2, q3, i, k, y + ldy, scales, a10, a11, a12, a13);
        Finish<TSimd, TVector>(x2, q0, q1, q2, q3, i, k, y + 2 * (nint)ldy, scales, a20, a21, a22, a23);
        Finish<TSimd, TVector>(x3, q0, q1, q2, q3, i, k, y + 3 * (nint)ldy, scales, a30, a31, a32, a33);
    }

    // One row's 4 outputs: the lanes summed, the K tail (i..k) added, then the scales.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Finish<TSimd, TVector>(float* x, sbyte* q0, sbyte* q1, sbyte* q2, sbyte* q3, int i, int k, float* y, float* scales,
        TVector a0, TVector a1, TVector a2, TVector a3)
        where TSimd : ISimd<TVector>
        where TVector : struct
    {
        float s0 = TSimd.Sum(a0), s1 = TSimd.Sum(a1), s2 = TSimd.Sum(a2), s3 = TSimd.Sum(a3);
        for (; i < k; i++)
        {
            float xi = x[i];
            s0 += xi * q0[i];
            s1 += xi * q1[i];
            s2 += xi * q2[i];
            s3 += xi * q3[i];
        }
        y[0] = s0 * scales[0];
        y[1] = s1 * scales[1];
        y[2] = s2 * scales[2];
        y[3] = s3 * scales[3];
    }
}
