using Loom.Models.T5;
using static TorchSharp.torch;

namespace Loom.Models.Tests.T5;

public class T5AttentionTests
{
    private static Tensor Randn(Generator g, params long[] shape) => randn(shape, generator: g);

    [Fact]
    public void FusedPathEqualsUnscaledSoftmaxWithRelativeBias()
    {
        using var _ = NewDisposeScope();
        using var g = new Generator(31);
        var bias = new RelativePositionBias(heads: 4, bidirectional: false, numBuckets: 8, maxDistance: 16, modelDim: 4, generator: g); // std 0.5: visible
        var q = Randn(g, 2, 4, 5, 8);
        var k = Randn(g, 2, 4, 9, 8);
        var v = Randn(g, 2, 4, 9, 8);
        var queryPositions = arange(4, 9, dtype: int64).unsqueeze(0);     // a chunk after a 4-token prefix
        var keyPositions = arange(9, dtype: int64).unsqueeze(0);
        var positionBias = bias.forward(queryPositions, keyPositions);    // (1, H, 5, 9)
        var allowed = Loom.Models.KvCache.CausalMask(5, 4, CPU);            // (5, 9)

        var mask = T5Attention.AdditiveMask(new AttentionInputs(k, v, allowed), 5, positionBias, float32);
        var fused = T5Attention.Attend(q, k, v, mask);
        var reference = T5Attention.Reference(q, k, v, allowed, positionBias);
        Assert.True(allclose(fused, reference, rtol: 1e-4, atol: 1e-5), $"max diff {(fused - reference).abs().max().item<float>()}");

        // No 1/√Dh: the reference with the usual scaling is a different function.
        var scaled = T5Attention.Reference(q / Math.Sqrt(8), k, v, allowed, positionBias);
        Assert.False(allclose(fused, scaled, rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void CausalAndUnmaskedInputsMatchTheirReferences()
    {
        using var _ = NewDisposeScope();
        using var g = new Generator(32);
        var q = Randn(g, 1, 2, 6, 4);
        var k = Randn(g, 1, 2, 6, 4);
        var v = Randn(g, 1, 2, 6, 4);
        var positionBias = Randn(g, 1, 2, 6, 6);

        var causal = T5Attention.Attend(q, k, v, T5Attention.AdditiveMask(new AttentionInputs(k, v, null, IsCausal: true), 6, positionBias, float32));
        var causalReference = T5Attention.Reference(q, k, v, ones(6, 6, dtype: @bool).tril(), positionBias);
        Assert.True(allclose(causal, causalReference, rtol: 1e-4, atol: 1e-5));

        var all = T5Attention.Attend(q, k, v, T5Attention.AdditiveMask(new AttentionInputs(k, v, null), 6, positionBias, float32));
        Assert.True(allclose(all, T5Attention.Reference(q, k, v, null, positionBias), rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void AFullyMaskedRowStaysFinite()
    {
        using var _ = NewDisposeScope();
        using var g = new Generator(33);
        var q = Randn(g, 1, 2, 3, 4);
        var k = Randn(g, 1, 2, 5, 4);
        var v = Randn(g, 1, 2, 5, 4);
        var allowed = tensor(new[] { true, true, false, false, false, false, false, false, false, false, false, false, false, true, true }).view(1, 1, 3, 5);
        var y = T5Attention.Attend(q, k, v, T5Attention.AdditiveMask(new AttentionInputs(k, v, allowed), 3, null, float32));
        Assert.False(y.isnan().any().item<bool>());
        var reference = T5Attention.Reference(q, k, v, allowed, null);
        Assert.True(allclose(y.select(2, 0), reference.select(2, 0), rtol: 1e-4, atol: 1e-5)); // real rows as defined
        Assert.True(allclose(y.select(2, 2), reference.select(2, 2), rtol: 1e-4, atol: 1e-5));
    }
}
