using Loom.Models;
using Loom.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class AttentionTests
{
    [Fact]
    public void RotaryScoresDependOnlyOnRelativePosition()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(1);
        var rotary = new Rotary(headDim: 16, maxLength: 64, ropeBase: 10000);
        var q = randn([1, 1, 1, 16], generator: g);
        var k = randn([1, 1, 1, 16], generator: g);
        float Score(int m, int n) => (rotary.Apply(q, m) * rotary.Apply(k, n)).sum().item<float>();

        float reference = Score(7, 3);
        foreach (int shift in new[] { 1, 5, 20, 50 })
            Assert.Equal(reference, Score(7 + shift, 3 + shift), 4);
        Assert.NotEqual(reference, Score(8, 3), 2); // a different offset gives a different score
        Assert.NotEqual(Score(0, 0), Score(0, 5), 2);
    }

    [Fact]
    public void FusedAttentionMatchesReferenceDefinition()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(2);
        var q = randn([2, 3, 5, 8], generator: g);
        var k = randn([2, 3, 9, 8], generator: g);
        var v = randn([2, 3, 9, 8], generator: g);
        // queries at the last 5 of 9 positions: the masked form used during cached prefill
        var fused = nn.functional.scaled_dot_product_attention(q, k, v, Attention.CausalMask(5, 4, CPU));
        Assert.True(allclose(fused, Attention.Reference(q, k, v), rtol: 1e-5, atol: 1e-5));
        var square = nn.functional.scaled_dot_product_attention(q, k.narrow(2, 0, 5), v.narrow(2, 0, 5), is_casual: true);
        Assert.True(allclose(square, Attention.Reference(q, k.narrow(2, 0, 5), v.narrow(2, 0, 5)), rtol: 1e-5, atol: 1e-5));
    }

    [Theory]
    [InlineData(1)] // multi-query
    [InlineData(2)] // grouped
    public void SharedKvHeadsEqualMultiHeadWithDuplicatedKv(int kvHeads)
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(3);
        var shared = new DecoderLm(TinyModels.Decoder(kvHeads), generator: g);
        var multiHead = new DecoderLm(TinyModels.Decoder(kvHeads: 4), generator: g);
        int group = 4 / kvHeads, headDim = 8;

        var state = shared.state_dict();
        var target = multiHead.state_dict();
        using (no_grad())
        {
            foreach (var (name, tensor) in target)
            {
                var source = state[name];
                if (name.EndsWith("attn.wk.weight", StringComparison.Ordinal) || name.EndsWith("attn.wv.weight", StringComparison.Ordinal))
                    // (Hkv·Dh, D) -> (H·Dh, D): head h of the multi-head model copies K/V head h / group
                    source = source.view(kvHeads, 1, headDim, -1).expand(kvHeads, group, headDim, source.shape[1]).reshape(4 * headDim, -1);
                tensor.copy_(source);
            }
        }
        var tokens = randint(0, 40, new long[] { 2, 12 }, generator: g);
        var a = shared.forward(tokens);
        var b = multiHead.forward(tokens);
        Assert.True(allclose(a, b, rtol: 1e-4, atol: 1e-5), $"max diff {(a - b).abs().max().item<float>()}");
    }

    [Fact]
    public void OutputIsCausal()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(4);
        var model = new DecoderLm(TinyModels.Decoder(), generator: g);
        var tokens = randint(0, 40, new long[] { 1, 10 }, generator: g);
        var changed = tokens.clone();
        changed[0, 9] = (tokens[0, 9] + 1) % 40;
        var a = model.forward(tokens);
        var b = model.forward(changed);
        Assert.True(allclose(a.narrow(1, 0, 9), b.narrow(1, 0, 9), rtol: 1e-5, atol: 1e-6)); // earlier positions unaffected
        Assert.False(allclose(a.narrow(1, 9, 1), b.narrow(1, 9, 1)));
    }
}
