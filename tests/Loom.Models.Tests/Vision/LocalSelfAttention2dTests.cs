using Loom.Models.Vision;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Vision;

public class LocalSelfAttention2dTests
{
    private static Tensor Input(long seed, int b, int c, int h, int w)
    {
        using var g = Seeded.Generator(seed);
        return randn(new long[] { b, c, h, w }, generator: g);
    }

    private static LocalSelfAttention2d Layer(int cin, int cout, int k, int heads, int mixtures = 1, long seed = 5)
    {
        using var g = Seeded.Generator(seed);
        return new LocalSelfAttention2d(cin, cout, k, heads, mixtures, generator: g);
    }

    private static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(4, 8, 3, 2, 6, 7)]  // every border pixel's window is cut
    [InlineData(6, 12, 5, 3, 5, 5)] // the window is as large as the image
    [InlineData(2, 4, 7, 1, 4, 9)]  // the window is larger than the image
    public void UnfoldPathEqualsDenseMaskedReference(int cin, int cout, int k, int heads, int h, int w)
    {
        using var scope = NewDisposeScope();
        using var layer = Layer(cin, cout, k, heads);
        var x = Input(1, 2, cin, h, w);
        var fast = layer.forward(x);
        Assert.Equal(new long[] { 2, cout, h, w }, fast.shape);
        Assert.True(MaxDiff(fast, layer.ForwardReference(x)) < 1e-5);
    }

    [Fact]
    public void GradientsOfBothPathsAgree()
    {
        using var scope = NewDisposeScope();
        using var layer = Layer(4, 8, 3, 2);
        var x = Input(2, 2, 4, 5, 6);
        var grads = new List<Tensor[]>();
        foreach (var path in new Func<Tensor, Tensor>[] { layer.forward, layer.ForwardReference })
        {
            layer.zero_grad();
            path(x).pow(2).sum().backward();
            grads.Add([.. layer.parameters().Select(p => p.grad!.clone())]);
        }
        for (int i = 0; i < grads[0].Length; i++) Assert.True(MaxDiff(grads[0][i], grads[1][i]) < 1e-4);
    }

    [Fact]
    public void AttentionStemEqualsReferenceAndHasItsShape()
    {
        using var scope = NewDisposeScope();
        using var stem = Layer(1, 8, 5, heads: 1, mixtures: 4);
        var x = Input(3, 2, 1, 7, 6);
        var y = stem.forward(x);
        Assert.Equal(new long[] { 2, 8, 7, 6 }, y.shape);
        Assert.True(MaxDiff(y, stem.ForwardReference(x)) < 1e-5);
        // The mixture embeddings are parameters of the stem only: emb_row, emb_col (K, 8) and ν (4, 8).
        var names = stem.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("mixture_rows", names);
        Assert.DoesNotContain("mixture_rows", Layer(1, 8, 5, 1).named_parameters().Select(p => p.name));
    }

    [Fact]
    public void StemValuesDependOnTheirPositionInTheWindow()
    {
        // With one mixture the value of a pixel is the same from every query; with several it is not, so the stem's
        // output differs from a plain layer's with the same projections.
        using var scope = NewDisposeScope();
        using var stem = Layer(2, 4, 3, 1, mixtures: 3);
        var x = Input(4, 1, 2, 5, 5);
        using (no_grad())
        {
            var mixtureWeights = stem.named_parameters().Where(p => p.name.StartsWith("mixture", StringComparison.Ordinal)).ToList();
            Assert.Equal(3, mixtureWeights.Count);
            var before = stem.forward(x);
            foreach (var (name, p) in mixtureWeights.Where(p => p.name == "mixture_rows")) p.add_(1.0);
            Assert.True(MaxDiff(before, stem.forward(x)) > 1e-4);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void RelativeEmbeddingsMakeItTranslationEquivariantOnInteriorPixels(int mixtures)
    {
        // Shift the image by cropping (s, t) pixels from its top-left: wherever a window lies wholly inside both images,
        // the output is the original output shifted the same way.
        using var scope = NewDisposeScope();
        const int k = 3, p = k / 2, s = 2, t = 1, h = 9, w = 8;
        using var layer = Layer(4, 8, k, mixtures == 1 ? 2 : 1, mixtures);
        var x = Input(6, 1, 4, h, w);
        var y = layer.forward(x);
        var shifted = layer.forward(x[.., .., s.., t..]);
        var expected = y[.., .., (s + p)..(h - p), (t + p)..(w - p)];
        var actual = shifted[.., .., p..(h - s - p), p..(w - t - p)];
        Assert.True(MaxDiff(actual, expected) < 1e-5);
        // Border outputs differ (their windows are cut differently), so the comparison above is not vacuous.
        Assert.True(MaxDiff(shifted[.., .., 0, 0], y[.., .., s, t]) > 1e-4);
    }

    [Fact]
    public void RelativeEmbeddingsTellTheLayerWherePixelsAre()
    {
        // The relative logits are the layer's only source of position: permuting a window's pixels changes the output.
        using var scope = NewDisposeScope();
        using var layer = Layer(2, 4, 3, 1);
        var x = Input(7, 1, 2, 3, 3);
        var flipped = x.flip(2, 3);
        var centre = layer.forward(x)[.., .., 1, 1];
        var centreFlipped = layer.forward(flipped)[.., .., 1, 1];
        Assert.True(MaxDiff(centre, centreFlipped) > 1e-4);
    }

    [Fact]
    public void FlopsOfOneLayerMatchAHandCount()
    {
        // d_in 4, d_out 8, k 3, 2 heads, 5×6 pixels: q, k, v projections 3 · 2 · (4 · 8 / 2) = 96 per pixel (grouped by
        // head); logits q·(k + r) and the weighted values 2 · 2 · 8 · 9 = 288 per pixel; 30 pixels · 384 = 11,520.
        using var layer = Layer(4, 8, 3, 2);
        Assert.Equal(11_520, layer.Flops(5, 6));
        // The stem with M = 4: projections (2 + 4) · 2 · 1 · 8 = 96, attention 2 · 2 · 8 · 25 = 800, mixing 2 · 4 · 8 · 25 = 1600.
        using var stem = Layer(1, 8, 5, 1, 4);
        Assert.Equal(28L * 28 * (96 + 800 + 1600), stem.Flops(28, 28));
        // A 3×3 convolution 8 → 16 on 7×7: 2 · 8 · 16 · 9 · 49.
        using var conv = new Conv2dLayer(8, 16, 3);
        Assert.Equal(2L * 8 * 16 * 9 * 49, conv.Flops(7, 7));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    public void Im2colConvolutionEqualsConv2d(int k)
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(8);
        using var conv = new Conv2dLayer(3, 5, k, generator: g);
        var x = Input(9, 2, 3, 7, 6);
        Assert.True(MaxDiff(conv.forward(x), conv.ForwardReference(x)) < 1e-5);
    }

    [Theory]
    [InlineData(4, 8, 4, 2, "odd")]
    [InlineData(4, 6, 3, 2, "even output width per head")]
    [InlineData(3, 8, 3, 2, "split into 2 heads")]
    public void InvalidShapesAreRefused(int cin, int cout, int k, int heads, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => new LocalSelfAttention2d(cin, cout, k, heads));
        Assert.Contains(expected, e.Message);
    }
}
