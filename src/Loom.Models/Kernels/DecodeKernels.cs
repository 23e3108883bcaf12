using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Kernels;

/// <summary>
/// Hand-written CPU loops for the small per-token operations of a decode step (RMS norm, rotary rotation, one
/// query's attention over the cache), where
/// libtorch's cost is its dispatch, not arithmetic: an RMS norm of one 512-wide row is four ops and ~17 µs through
/// TorchSharp, the loop below writes one tensor in ~2 µs (<c>loom-bench decode-profile</c>). Each is taken only for
/// contiguous float32 CPU tensors that record no gradient; the layers keep their libtorch form for everything else
/// and as the reference the tests hold these to.
/// </summary>
internal static unsafe class DecodeKernels
{
    /// <summary>Whether the loops take these tensors: all contiguous float32 on the CPU, none recording a gradient.</summary>
    public static bool Takes(Tensor a, Tensor b, Tensor? c = null)
    {
        bool recording = is_grad_enabled();
        return Takes(a, recording) && Takes(b, recording) && (c is null || Takes(c, recording));
    }

    private static bool Takes(Tensor t, bool recording) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && !(recording && t.requires_grad) && t.is_contiguous();

    /// <summary>
    /// x · rsqrt(mean(x²) + eps) · g over the last dimension of x, (..., D), with g = <paramref name="weight"/> (or
    /// 1 + weight, <paramref name="unitOffset"/>), (D), rounded as the layer's ops round: the scaled row, then the gain.
    /// The sum of squares is accumulated in float32 lanes, so it differs from libtorch's mean by summation order only.
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps, bool unitOffset)
    {
        int d = (int)x.size(-1);
        long rows = x.NumberOfElements / d;
        var y = empty_like(x); // (..., D)
        float* xs = (float*)CpuVectors.DataPointer(x), ys = (float*)CpuVectors.DataPointer(y), g = (float*)CpuVectors.DataPointer(weight);
        for (long r = 0; r < rows; r++) RmsNormRow(xs + r * d, ys + r * d, g, d, (float)eps, unitOffset);
        return y;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNormRow(float* x, float* y, float* g, int d, float eps, bool unitOffset)
    {
        float sum = 0;
        int i = 0;
        if (CpuVectors.HasAvx512)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= d; i += 16)
            {
                var v = Vector512.Load(x + i);
                acc += v * v;
            }
            sum = Vector512.Sum(acc);
        }
        for (; i < d; i++) sum += x[i] * x[i];
        float scale = 1 / MathF.Sqrt(sum / d + eps);
        if (unitOffset)
        {
            for (int j = 0; j < d; j++) y[j] = x[j] * scale * (1 + g[j]);
        }
        else
        {
            for (int j = 0; j < d; j++) y[j] = x[j] * scale * g[j];
        }
    }

    /// <summary>
    /// Rotary rotation of x, (B, H, T, D) contiguous, whose tokens sit at positions start..start+T-1, from the
    /// full-width tables [cos, cos] and [−sin, sin], (maxLen, D): y = roll(x, D/2) · sinSigned + x · cosFull, each
    /// product rounded and then summed, exactly as the layer's four ops compute it (so bit for bit the same).
    /// </summary>
    public static Tensor Rotate(Tensor x, Tensor cosFull, Tensor sinSigned, long start)
    {
        long t = x.size(2);
        int d = (int)x.size(3), half = d / 2;
        long rows = x.NumberOfElements / d;
        var y = empty_like(x); // (B, H, T, D)
        float* xs = (float*)CpuVectors.DataPointer(x), ys = (float*)CpuVectors.DataPointer(y);
        float* cos = (float*)CpuVectors.DataPointer(cosFull), sin = (float*)CpuVectors.DataPointer(sinSigned);
        for (long r = 0; r < rows; r++)
        {
            long position = start + r % t;
            float* xr = xs + r * d, yr = ys + r * d, c = cos + position * d, s = sin + position * d;
            for (int j = 0; j < d; j++)
            {
                float rolled = xr[j < half ? j + half : j - half] * s[j];
                float direct = xr[j] * c[j];
                yr[j] = rolled + direct;
            }
        }
        return y;
    }

    // Multiply-adds (B·H·Dh·S) up to which AttendOne runs on one thread (about 0.2 ms); longer contexts are worth the
    // fused kernel's threads.
    internal const long OneQueryMaxWork = 1 << 20;

    /// <summary>
    /// Whether <see cref="AttendOne"/> takes these: one query per row, (B, H, 1, Dh) contiguous, over keys and values,
    /// (B, Hkv, S, Dh), whose rows are contiguous (a cache's leading positions), all float32 on the CPU without gradient,
    /// and little enough work for one thread.
    /// </summary>
    public static bool TakesOneQuery(Tensor q, Tensor keys, Tensor values)
    {
        if (q.dim() != 4 || keys.dim() != 4 || values.dim() != 4 || q.size(2) != 1) return false;
        bool recording = is_grad_enabled();
        if (!Takes(q, recording)) return false;
        foreach (var kv in (ReadOnlySpan<Tensor>)[keys, values])
        {
            if (kv.device_type != DeviceType.CPU || kv.dtype != ScalarType.Float32 || (recording && kv.requires_grad)) return false;
            if (kv.stride(3) != 1 || kv.stride(2) != kv.size(3) || kv.size(0) != q.size(0) || kv.size(3) != q.size(3)) return false;
        }
        if (keys.size(1) != values.size(1) || keys.size(2) != values.size(2) || keys.size(2) == 0 || q.size(1) % keys.size(1) != 0) return false;
        return q.NumberOfElements * keys.size(2) <= OneQueryMaxWork;
    }

    /// <summary>
    /// softmax(q kᵀ · scale) v for one query per row and head, every key visible (a decode step's attention): q
    /// (B, H, 1, Dh); keys and values (B, Hkv, S, Dh), each K/V head serving H/Hkv query heads; (B, H, 1, Dh) out. Scores
    /// are float32 and the softmax subtracts the row's maximum, so it differs from libtorch's fused kernel by rounding
    /// only. It runs on the calling thread: libtorch's fused kernel would wake its OpenMP workers for a few
    /// microseconds of work, and they then spin on the cores the next matmul's threads need.
    /// </summary>
    public static Tensor AttendOne(Tensor q, Tensor keys, Tensor values, double scale)
    {
        long b = q.size(0), heads = q.size(1), kvHeads = keys.size(1);
        int s = (int)keys.size(2), dh = (int)q.size(3);
        var y = empty_like(q); // (B, H, 1, Dh)
        float* qs = (float*)CpuVectors.DataPointer(q), ys = (float*)CpuVectors.DataPointer(y);
        float* ks = (float*)CpuVectors.DataPointer(keys, requireContiguous: false), vs = (float*)CpuVectors.DataPointer(values, requireContiguous: false);
        long group = heads / kvHeads;
        for (long row = 0; row < b * heads; row++)
        {
            long bi = row / heads, kvh = row % heads / group;
            var rows = new ContiguousRows(ks + bi * keys.stride(0) + kvh * keys.stride(1), vs + bi * values.stride(0) + kvh * values.stride(1));
            AttendRow(qs + row * dh, rows, ys + row * dh, s, dh, (float)scale);
        }
        return y;
    }

    /// <summary>
    /// <see cref="AttendOne"/> over a paged cache: row b's keys and values are positions 0..lengths[b]-1 of its blocks,
    /// position j at block <c>blockIds[b][j / Bs]</c>, offset j mod Bs, of the pools, (blocks, Hkv, Bs, Dh) contiguous.
    /// Read in place: nothing is gathered.
    /// </summary>
    public static Tensor AttendOnePaged(Tensor q, Tensor keyPool, Tensor valuePool, IReadOnlyList<IReadOnlyList<int>> blockIds, IReadOnlyList<int> lengths, double scale)
    {
        long b = q.size(0), heads = q.size(1);
        int kvHeads = (int)keyPool.size(1), blockSize = (int)keyPool.size(2), dh = (int)q.size(3);
        var y = empty_like(q); // (B, H, 1, Dh)
        float* qs = (float*)CpuVectors.DataPointer(q), ys = (float*)CpuVectors.DataPointer(y);
        float* ks = (float*)CpuVectors.DataPointer(keyPool), vs = (float*)CpuVectors.DataPointer(valuePool);
        long group = heads / kvHeads;
        for (int bi = 0; bi < b; bi++)
        {
            int length = lengths[bi];
            var table = blockIds[bi];
            int[] ids = new int[(length + blockSize - 1) / blockSize];
            for (int j = 0; j < ids.Length; j++) ids[j] = table[j];
            fixed (int* idp = ids)
            {
                for (long h = 0; h < heads; h++)
                {
                    long row = bi * heads + h;
                    var rows = new PagedRows(ks, vs, idp, (int)(h / group), kvHeads, blockSize, dh);
                    AttendRow(qs + row * dh, rows, ys + row * dh, length, dh, (float)scale);
                }
            }
        }
        return y;
    }

    /// <summary>
    /// Where attention finds the key and value rows of one K/V head: in runs of consecutive rows (stride Dh), run r
    /// holding rows r·<see cref="RunLength"/> onwards.
    /// </summary>
    private interface IKeyValueRows
    {
        /// <summary>Rows per run (the last run may be shorter).</summary>
        int RunLength { get; }

        /// <summary>The first key and value row of run <paramref name="run"/>.</summary>
        (nint Keys, nint Values) Run(int run);
    }

    /// <summary>Rows one after another (a contiguous cache's head): one run.</summary>
    private readonly struct ContiguousRows(float* keys, float* values) : IKeyValueRows
    {
        public int RunLength => int.MaxValue;

        public (nint Keys, nint Values) Run(int run) => ((nint)keys, (nint)values);
    }

    /// <summary>Rows in blocks of a pool, (blocks, Hkv, Bs, Dh): run r is block ids[r], Bs rows.</summary>
    private readonly struct PagedRows(float* keys, float* values, int* ids, int kvHead, int kvHeads, int blockSize, int dh) : IKeyValueRows
    {
        public int RunLength => blockSize;

        public (nint Keys, nint Values) Run(int run)
        {
            nint offset = ((nint)ids[run] * kvHeads + kvHead) * blockSize * dh;
            return ((nint)(keys + offset), (nint)(values + offset));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendRow<TRows>(float* q, TRows rows, float* y, int s, int dh, float scale)
        where TRows : struct, IKeyValueRows
    {
        float[]? rented = s > 1024 ? ArrayPool<float>.Shared.Rent(s) : null;
        Span<float> scores = rented is null ? stackalloc float[s] : rented.AsSpan(0, s);
        float max = float.NegativeInfinity;
        int runLength = rows.RunLength;
        for (int start = 0, run = 0; start < s; start += runLength, run++)
        {
            float* k = (float*)rows.Run(run).Keys;
            for (int j = start, end = (int)Math.Min(s, (long)start + runLength); j < end; j++, k += dh)
            {
                float score = Dot(q, k, dh) * scale;
                scores[j] = score;
                max = MathF.Max(max, score);
            }
        }
        float total = 0;
        for (int j = 0; j < s; j++)
        {
            float e = MathF.Exp(scores[j] - max);
            scores[j] = e;
            total += e;
        }
        new Span<float>(y, dh).Clear();
        for (int start = 0, run = 0; start < s; start += runLength, run++)
        {
            float* v = (float*)rows.Run(run).Values;
            for (int j = start, end = (int)Math.Min(s, (long)start + runLength); j < end; j++, v += dh) AddScaled(y, v, scores[j] / total, dh);
        }
        if (rented is not null) ArrayPool<float>.Shared.Return(rented);
    }

    // Σ a[i] b[i] over n floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n)
    {
        float sum = 0;
        int i = 0;
        if (CpuVectors.HasAvx512)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16) acc += Vector512.Load(a + i) * Vector512.Load(b + i);
            sum = Vector512.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    // y += w · x over n floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddScaled(float* y, float* x, float w, int n)
    {
        int i = 0;
        if (CpuVectors.HasAvx512)
        {
            var wv = Vector512.Create(w);
            for (; i + 16 <= n; i += 16) (Vector512.Load(y + i) + wv * Vector512.Load(x + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += w * x[i];
    }
}
