using Loom.Models;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class DecoderBlockTests
{
    private static nn.Module<Tensor, Tensor> Child(nn.Module block, string name) =>
        (nn.Module<Tensor, Tensor>)block.named_children().Single(c => c.name == name).module;

    private static DecoderBlock Block(DecoderLmOptions o, Rotary rotary) => new(
        0,
        new Attention(o.ModelDim, o.NumHeads, o.NumKvHeads, o.HeadDim, o.UseBias, rotary),
        new Mlp(o.ModelDim, o.MlpDim, o.Activation, o.UseBias),
        () => Norms.Create(o.Norm, o.ModelDim, o.NormEpsilon, o.UseBias, null),
        o.ParallelBlock);

    [Fact]
    public void ParallelBlockAddsBothBranchesOfOneNorm()
    {
        using var _ = NewDisposeScope();
        manual_seed(5);
        var block = Block(TestModels.Tiny(parallel: true), new Rotary(8, 32, 10000));
        var x = randn(2, 6, 32);
        var h = Child(block, "norm").forward(x);
        var expected = x + Child(block, "attn").forward(h) + Child(block, "mlp").forward(h);
        Assert.True(allclose(block.forward(x), expected, rtol: 1e-5, atol: 1e-6));
        Assert.DoesNotContain(block.named_children(), c => c.name == "mlp_norm");
    }

    [Fact]
    public void SerialBlockFeedsAttentionOutputToTheMlp()
    {
        using var _ = NewDisposeScope();
        manual_seed(6);
        var block = Block(TestModels.Tiny(parallel: false), new Rotary(8, 32, 10000));
        var x = randn(2, 6, 32);
        var h = x + Child(block, "attn").forward(Child(block, "norm").forward(x));
        var expected = h + Child(block, "mlp").forward(Child(block, "mlp_norm").forward(h));
        Assert.True(allclose(block.forward(x), expected, rtol: 1e-5, atol: 1e-6));

        // The same weights arranged in parallel give a different function.
        var parallelOutput = x + Child(block, "attn").forward(Child(block, "norm").forward(x))
                               + Child(block, "mlp").forward(Child(block, "norm").forward(x));
        Assert.False(allclose(block.forward(x), parallelOutput, rtol: 1e-3, atol: 1e-4));
    }

    [Fact]
    public void GeluLearnedLayerNormBiasVariantRuns()
    {
        using var _ = NewDisposeScope();
        var o = TestModels.Tiny() with
        {
            Activation = MlpActivation.Gelu, Positions = PositionEncoding.Learned, Norm = NormKind.LayerNorm,
            UseBias = true, SharedEmbeddings = false, NumKvHeads = 4,
        };
        var model = new DecoderLm(o);
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("pos_embed", names);
        Assert.Contains("lm_head.weight", names);
        Assert.Contains("blocks.0.mlp.up.bias", names);
        Assert.DoesNotContain("blocks.0.mlp.gate.weight", names);
        Assert.Equal(new long[] { 3, 7, 40 }, model.forward(randint(0, 40, new long[] { 3, 7 })).shape);
    }

    [Fact]
    public void InvalidOptionsNameTheField()
    {
        var e = Assert.Throws<ArgumentException>(() => new DecoderLm(TestModels.Tiny() with { NumKvHeads = 3 }));
        Assert.Contains("num_kv_heads", e.Message);
        Assert.Contains("num_layers", Assert.Throws<ArgumentException>(() => (TestModels.Tiny() with { NumLayers = 0 }).Validate()).Message);
    }
}
