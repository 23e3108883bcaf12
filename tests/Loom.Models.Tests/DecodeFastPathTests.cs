using Loom.Models;
using Loom.Models.Kernels;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>The decode step's fast paths (rotary by table slice, one-token head layout) against their references.</summary>
public class DecodeFastPathTests
{
    [Theory]
    [InlineData(0, 5)]
    [InlineData(7, 1)]
    [InlineData(60, 4)]
    public void RotaryEqualsTheRotateHalfReferenceBitForBit(long start, long tokens)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(21);
        var rotary = new Rotary(headDim: 16, maxLength: 80, ropeBase: 10000);
        var x = randn(new long[] { 2, 3, tokens, 16 }, generator: g); // (B, H, T, Dh)
        var expected = rotary.Reference(x, start);
        Assert.True(Same(expected, rotary.Apply(x, start)), "sliced tables differ from the reference");
        var positions = arange(start, start + tokens, dtype: int64).unsqueeze(0).expand(2, tokens); // (B, T)
        Assert.True(Same(expected, rotary.Apply(x, positions)), "gathered tables differ from the reference");
        var keys = randn(new long[] { 2, 1, tokens, 16 }, generator: g); // (B, Hkv, T, Dh)
        var (queries, rotatedKeys) = rotary.Apply(x, keys, start);
        Assert.True(Same(expected, queries) && Same(rotary.Reference(keys, start), rotatedKeys), "the shared-table pair differs from the reference");
        Assert.False(Same(expected, rotary.Reference(x, start + 1)), "the rotation does not depend on the position");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void CachedDecodeBySliceEqualsByGatheredPositions(int kvHeads)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(22);
        var model = new DecoderLm(TinyModels.Decoder(kvHeads: kvHeads, parallel: false), generator: g);
        model.eval();
        var tokens = randint(0, 40, new long[] { 2, 12 }, generator: g);
        var full = model.forward(tokens); // (2, 12, V), no context: positions from 0

        var sliced = Decode(model, tokens, new ConcatCache(2, model.KvCacheShape, exposeStart: true));
        var gathered = Decode(model, tokens, new ConcatCache(2, model.KvCacheShape, exposeStart: false));
        Assert.True(Same(sliced, gathered), $"max diff {(sliced - gathered).abs().max().item<float>()}");
        Assert.True(allclose(full, sliced, rtol: 1e-4, atol: 1e-5), $"max diff {(full - sliced).abs().max().item<float>()}");

        using var cache = new KvCache(model.KvCacheShape, batchSize: 2, capacity: 16); // the preallocated cache, in place
        var inPlace = cat(new[] { cache.Run(model, tokens.narrow(1, 0, 4)) }
            .Concat(Enumerable.Range(4, 8).Select(i => cache.Run(model, tokens.narrow(1, i, 1)))).ToList(), 1);
        Assert.True(allclose(sliced, inPlace, rtol: 0, atol: 1e-5), $"max diff {(sliced - inPlace).abs().max().item<float>()}");
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && (a == b).all().item<bool>();

    /// <summary>A 4-token prefill, then one token at a time through <paramref name="cache"/>: logits (B, 12, V).</summary>
    private static Tensor Decode(DecoderLm model, Tensor tokens, ConcatCache cache)
    {
        var logits = new List<Tensor> { model.Forward(tokens.narrow(1, 0, 4), cache.Step(4)) };
        for (int i = 4; i < tokens.shape[1]; i++) logits.Add(model.Forward(tokens.narrow(1, i, 1), cache.Step(1)));
        return cat(logits, 1);
    }

    /// <summary>
    /// The plain reference cache: keys and values grown with cat, every query masked causally by position. With
    /// <c>exposeStart</c> false it gives only <see cref="IAttentionContext.Positions"/>, as a ragged context would.
    /// </summary>
    private sealed class ConcatCache(long rows, KvCacheShape shape, bool exposeStart)
    {
        private readonly long rows = rows;
        private readonly bool exposeStart = exposeStart;
        private readonly Tensor?[] keys = new Tensor?[shape.NumLayers];
        private readonly Tensor?[] values = new Tensor?[shape.NumLayers];
        private int length;

        public IAttentionContext Step(int count)
        {
            var step = new Context(this, length, count);
            length += count;
            return step;
        }

        private sealed class Context(ConcatCache cache, int start, int count) : IAttentionContext
        {
            public Tensor Positions { get; } = arange(start, start + count, dtype: int64).unsqueeze(0).expand(cache.rows, count); // (B, T)

            public long? StartPosition => cache.exposeStart ? start : null;

            public AttentionInputs Attend(int layer, Tensor k, Tensor v)
            {
                cache.keys[layer] = cache.keys[layer] is { } old ? cat(new[] { old, k }, 2) : k;     // (B, Hkv, S, Dh)
                cache.values[layer] = cache.values[layer] is { } oldV ? cat(new[] { oldV, v }, 2) : v; // (B, Hkv, S, Dh)
                return new AttentionInputs(cache.keys[layer]!, cache.values[layer]!, KvCache.CausalMask(count, start, k.device));
            }
        }
    }
}

/// <summary>Loom's CPU decode kernels (float matmul, RMS norm, one-query attention) against libtorch's ops.</summary>
public class DecodeKernelTests
{
    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(1, 33, 17, 1)]     // neither a multiple of 16 (AVX-512 floats) nor of 8 (AVX2)
    [InlineData(1, 512, 1376, 1)]  // a decode step's MLP up-projection
    [InlineData(1, 512, 1376, 2)]  // split over two threads (at least 128 channels each)
    [InlineData(1, 1376, 300, 3)]  // fewer channels than 128 a thread: one part
    [InlineData(2, 65, 130, 2)]
    [InlineData(3, 100, 64, 1)]    // a short block of rows repeats its last row
    [InlineData(5, 70, 257, 2)]    // one block of 4 rows, then a block of 1
    [InlineData(Float32Linear.DirectKernelMaxRows, 48, 40, 1)]
    [InlineData(11, 16, 9, 1)]     // more rows than Linear takes: DirectLinear still takes any
    public void FloatKernelAgreesWithLibTorch(int rows, int inFeatures, int outFeatures, int threads)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(rows * 1000 + inFeatures);
        var w = randn(new long[] { outFeatures, inFeatures }, generator: g) / Math.Sqrt(inFeatures); // (out, in)
        var x = randn(new long[] { 1, rows, inFeatures }, generator: g);                             // (1, M, in)
        var expected = nn.functional.linear(x, w);                                                   // (1, M, out)
        var direct = Float32Linear.DirectLinear(x, w, threads);
        Assert.Equal(expected.shape, direct.shape);
        Assert.True(allclose(direct, expected, rtol: 1e-5, atol: 1e-5), $"max diff {(direct - expected).abs().max().item<float>()}");
        Assert.Equal(rows <= Float32Linear.DirectKernelMaxRows, Float32Linear.UsesDirectKernel(x, w));

        var bias = randn(new long[] { outFeatures }, generator: g);
        var withBias = Float32Linear.Linear(x, w, bias);
        Assert.True(allclose(withBias, expected + bias, rtol: 1e-5, atol: 1e-5), $"max diff {(withBias - expected - bias).abs().max().item<float>()}");
    }

    [Fact]
    public void FloatKernelLeavesGradientsDtypesAndViewsToLibTorch()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(5);
        var w = randn(new long[] { 8, 16 }, generator: g).requires_grad_();
        var x = randn(new long[] { 1, 1, 16 }, generator: g);
        Assert.False(Float32Linear.UsesDirectKernel(x, w), "a kernel that needs a gradient took the no-gradient path");
        var y = Float32Linear.Linear(x, w, null);
        y.sum().backward();
        Assert.NotNull(w.grad);
        Assert.True(allclose(w.grad!, x.reshape(1, 16).expand(8, 16)), "the gradient of sum(x Wᵀ) is x in every row");
        using (no_grad())
        {
            Assert.Equal(Float32Linear.DirectKernelIsSupported, Float32Linear.UsesDirectKernel(x, w));
            Assert.False(Float32Linear.UsesDirectKernel(x.to(float64), w.to(float64)));
            var strided = randn(new long[] { 16, 2 }, generator: g).t().narrow(0, 0, 1);  // (1, 16), every other float
            Assert.False(Float32Linear.UsesDirectKernel(strided, w));
            Assert.True(allclose(Float32Linear.Linear(strided, w, null), nn.functional.linear(strided, w)));
            Assert.Throws<NotSupportedException>(() => Float32Linear.DirectLinear(x.to(float64), w.to(float64)));
            Assert.Throws<ArgumentOutOfRangeException>(() => Float32Linear.DirectLinear(x, w, threads: 0));
        }
    }

    [Theory]
    [InlineData(false, 512)]
    [InlineData(true, 512)]  // Gemma's 1 + g
    [InlineData(false, 37)]  // a width with a scalar tail
    public void RmsNormLoopAgreesWithTheOpsReference(bool unitOffset, int width)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(width);
        var norm = new RmsNorm(width, 1e-6, unitOffset: unitOffset);
        using (no_grad()) norm.parameters().First().copy_(randn(new long[] { width }, generator: g));
        var x = randn(new long[] { 2, 3, width }, generator: g) * 3;
        using (no_grad())
        {
            var fast = norm.forward(x);
            var reference = norm.Reference(x);
            Assert.True(allclose(fast, reference, rtol: 1e-5, atol: 1e-6), $"max diff {(fast - reference).abs().max().item<float>()}");
        }
        // Recording a gradient, the layer takes its ops: the weight gets one.
        norm.forward(x).sum().backward();
        Assert.NotNull(norm.parameters().First().grad);
    }

    [Theory]
    [InlineData(1, 8, 8, 1)]     // one key
    [InlineData(1, 8, 8, 37)]
    [InlineData(2, 8, 2, 50)]    // grouped queries: 4 query heads a K/V head
    [InlineData(1, 4, 1, 1500)]  // multi-query, more scores than the stack buffer holds
    public void OneQueryAttentionAgreesWithTheFusedKernel(int batch, int heads, int kvHeads, int keys)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(keys);
        const int headDim = 16;
        var cacheK = randn(new long[] { batch, kvHeads, keys + 7, headDim }, generator: g); // a preallocated cache, partly filled
        var cacheV = randn(new long[] { batch, kvHeads, keys + 7, headDim }, generator: g);
        var inputs = new AttentionInputs(cacheK.narrow(2, 0, keys), cacheV.narrow(2, 0, keys), null); // (B, Hkv, S, Dh) views
        var q = randn(new long[] { batch, heads, 1, headDim }, generator: g) * 2;        // (B, H, 1, Dh)
        var expected = nn.functional.scaled_dot_product_attention(
            q, Attention.ExpandKvHeads(inputs.Keys.contiguous(), heads), Attention.ExpandKvHeads(inputs.Values.contiguous(), heads));
        using (no_grad())
        {
            var y = Attention.Attend(q, inputs, heads);
            Assert.Equal(expected.shape, y.shape);
            Assert.True(allclose(y, expected, rtol: 1e-5, atol: 1e-5), $"max diff {(y - expected).abs().max().item<float>()}");
        }
        // Recording a gradient for the queries, attention takes the fused kernel and the query gets its gradient.
        var trainable = q.detach().requires_grad_();
        Attention.Attend(trainable, inputs, heads).sum().backward();
        Assert.NotNull(trainable.grad);
    }
}

/// <summary>One-query attention over a paged cache, read in place, against libtorch's attention over the gathered blocks.</summary>
public class OneQueryPagedAttentionTests
{
    [Theory]
    [InlineData(new[] { 1 }, 8, 8, 4)]          // one key in one block
    [InlineData(new[] { 37, 5, 16 }, 8, 2, 4)]  // rows of different lengths, grouped queries, a block exactly full
    [InlineData(new[] { 100 }, 4, 1, 16)]       // multi-query
    public void PagedAgreesWithAttentionOverTheGatheredBlocks(int[] lengths, int heads, int kvHeads, int blockSize)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(lengths.Sum());
        const int headDim = 16, poolBlocks = 40;
        var keyPool = randn(new long[] { poolBlocks, kvHeads, blockSize, headDim }, generator: g);   // (N, Hkv, Bs, Dh)
        var valuePool = randn(new long[] { poolBlocks, kvHeads, blockSize, headDim }, generator: g);
        // Each row's blocks: distinct, shuffled ids, so a wrong block or offset shows.
        var order = randperm(poolBlocks, generator: g).data<long>().Select(i => (int)i).ToArray();
        var tables = new List<IReadOnlyList<int>>();
        int next = 0;
        foreach (int length in lengths)
        {
            int count = (length + blockSize - 1) / blockSize;
            tables.Add(order.Skip(next).Take(count).ToArray());
            next += count;
        }
        var q = randn(new long[] { lengths.Length, heads, 1, headDim }, generator: g) * 2; // (B, H, 1, Dh)
        Assert.True(OneQueryAttention.TakesPaged(q, keyPool, valuePool, lengths.Sum()));
        var y = OneQueryAttention.Paged(q, keyPool, valuePool, tables, lengths);
        Assert.Equal(q.shape, y.shape);
        for (int b = 0; b < lengths.Length; b++)
        {
            var ids = tensor(tables[b].Select(i => (long)i).ToArray());
            Tensor Gather(Tensor pool) => pool.index_select(0, ids).permute(1, 0, 2, 3).reshape(1, kvHeads, -1, headDim).narrow(2, 0, lengths[b]); // (1, Hkv, S, Dh)
            var expected = nn.functional.scaled_dot_product_attention(q.narrow(0, b, 1),
                Attention.ExpandKvHeads(Gather(keyPool), heads), Attention.ExpandKvHeads(Gather(valuePool), heads)); // (1, H, 1, Dh)
            var row = y.narrow(0, b, 1);
            Assert.True(allclose(row, expected, rtol: 1e-5, atol: 1e-5), $"row {b}: max diff {(row - expected).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void PagedRefusesRowsItsBlocksDoNotCover()
    {
        using var _ = NewDisposeScope();
        var pool = zeros(4, 1, 2, 8);
        var q = zeros(1, 1, 1, 8);
        var tooShort = Assert.Throws<ArgumentException>(() => OneQueryAttention.Paged(q, pool, pool, [new[] { 0 }], [3]));
        Assert.Contains("3 positions need 2 blocks of 2", tooShort.Message);
        var outside = Assert.Throws<ArgumentException>(() => OneQueryAttention.Paged(q, pool, pool, [new[] { 9 }], [1]));
        Assert.Contains("block id 9 is outside the pool's 4 blocks", outside.Message);
        Assert.Throws<ArgumentException>(() => OneQueryAttention.Paged(q, pool, pool, [new[] { 0 }], [0]));
        Assert.Throws<NotSupportedException>(() => OneQueryAttention.Paged(q.to(float64), pool.to(float64), pool.to(float64), [new[] { 0 }], [1]));
    }
}
