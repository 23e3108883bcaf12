using Loom.Models;
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
