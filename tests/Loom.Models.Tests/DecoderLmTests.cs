using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class DecoderLmTests
{
    [Fact]
    public void LossMatchesCrossEntropyPlusZLoss()
    {
        using var _ = NewDisposeScope();
        manual_seed(8);
        var model = new DecoderLm(TestModels.Tiny());
        var inputs = randint(0, 40, new long[] { 2, 10 });
        var targets = randint(0, 40, new long[] { 2, 10 });
        var loss = model.Loss(inputs, targets, zLossWeight: 1e-4);

        var logits = model.forward(inputs).reshape(-1, 40);
        var ce = nn.functional.cross_entropy(logits, targets.reshape(-1));
        var z = logits.logsumexp(-1).pow(2).mean();
        Assert.Equal(ce.item<float>(), loss.CrossEntropy.item<float>(), 4);
        Assert.Equal(z.item<float>(), loss.ZLoss.item<float>(), 3);
        Assert.Equal((ce + 1e-4 * z).item<float>(), loss.Total.item<float>(), 4);
    }

    [Fact]
    public void IgnoredTargetsDoNotCount()
    {
        using var _ = NewDisposeScope();
        manual_seed(9);
        var model = new DecoderLm(TestModels.Tiny());
        var inputs = randint(0, 40, new long[] { 1, 8 });
        var targets = randint(0, 40, new long[] { 1, 8 });
        var masked = targets.clone();
        masked[0, TensorIndex.Slice(4, 8)] = tensor(-1L);
        var full = model.Loss(inputs, targets, 0).CrossEntropy.item<float>();
        var half = model.Loss(inputs, masked, 0).CrossEntropy.item<float>();
        var firstHalf = nn.functional.cross_entropy(model.forward(inputs)[0, TensorIndex.Slice(0, 4)], targets[0, TensorIndex.Slice(0, 4)]).item<float>();
        Assert.Equal(firstHalf, half, 4);
        Assert.NotEqual(full, half, 3);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CachedPrefillAndDecodeEqualFullForward(bool parallel)
    {
        using var _ = NewDisposeScope();
        manual_seed(10);
        var o = TestModels.Tiny(kvHeads: 2, parallel: parallel);
        var model = new DecoderLm(o);
        var tokens = randint(0, 40, new long[] { 2, 12 });
        var full = model.forward(tokens); // (2, 12, V)

        using var cache = KvCache.For(model, batchSize: 2, capacity: 16);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 5));            // 5 prompt tokens at once
        var chunk = cache.Run(model, tokens.narrow(1, 5, 3));              // a 3-token chunk against the cache
        var steps = Enumerable.Range(8, 4).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToList(); // one at a time
        var cached = cat(new[] { prefill, chunk }.Concat(steps).ToList(), 1);
        Assert.Equal(12, cache.Length);
        Assert.True(allclose(full, cached, rtol: 1e-4, atol: 1e-5), $"max diff {(full - cached).abs().max().item<float>()}");
    }

    [Fact]
    public void SequenceLongerThanTheModelIsRefused()
    {
        using var _ = NewDisposeScope();
        var model = new DecoderLm(TestModels.Tiny());
        var e = Assert.Throws<ArgumentException>(() => model.forward(zeros(1, 33, dtype: int64)));
        Assert.Contains("max_sequence_length", e.Message);
    }
}
