using Loom.Models.Layers;
using Loom.Models.Reformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Reformer;

public class ReversibleTests
{
    private const int D = 8;

    private static ReversibleBlock Block(Generator g) =>
        new(new Mlp(D, 16, MlpActivation.Gelu, useBias: true, generator: g), new Mlp(D, 16, MlpActivation.SwiGlu, useBias: false, generator: g));

    private static ReversibleStack Stack(long seed, int depth, bool reversible)
    {
        using var g = Seeded.Generator(seed);
        return new ReversibleStack(Enumerable.Range(0, depth).Select(_ => Block(g)).ToList(), reversible);
    }

    private static (Tensor X1, Tensor X2) Inputs(long seed)
    {
        using var g = Seeded.Generator(seed);
        return (randn(new long[] { 2, 5, D }, generator: g), randn(new long[] { 2, 5, D }, generator: g));
    }

    private static double RelativeError(Tensor actual, Tensor expected) =>
        (actual - expected).abs().max().item<float>() / Math.Max(expected.abs().max().item<float>(), 1e-12);

    [Fact]
    public void BlockReconstructsItsInputs()
    {
        using var g = Seeded.Generator(1);
        using var block = Block(g);
        using var scope = NewDisposeScope();
        var (x1, x2) = Inputs(2);
        var (y1, y2) = block.Forward(x1, x2);
        var (r1, r2) = block.Inverse(y1, y2);
        Assert.True((r1 - x1).abs().max().item<float>() < 1e-5);
        Assert.True((r2 - x2).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void StackReconstructsItsInputs()
    {
        using var stack = Stack(3, depth: 4, reversible: true);
        using var scope = NewDisposeScope();
        var (x1, x2) = Inputs(4);
        var (y1, y2) = stack.Forward(x1, x2);
        var (r1, r2) = stack.Inverse(y1, y2);
        // Rounding grows with the residual stream, which grows with depth: compare relative to the outputs.
        var scale = Math.Max(y1.abs().max().item<float>(), y2.abs().max().item<float>());
        var error = Math.Max((r1 - x1).abs().max().item<float>(), (r2 - x2).abs().max().item<float>());
        Assert.True(error / scale < 1e-6, $"error {error}, scale {scale}");
    }

    [Fact]
    public void ReversibleGradientsEqualThoseOfThePlainStack()
    {
        using var reversible = Stack(5, depth: 3, reversible: true);
        using var plain = Stack(5, depth: 3, reversible: false);
        var results = new List<(Tensor Y1, Tensor Y2, Tensor Dx1, Tensor Dx2, Tensor[] Dp)>();
        using var scope = NewDisposeScope();
        foreach (var stack in new[] { reversible, plain })
        {
            var (x1, x2) = Inputs(6);
            x1.requires_grad_(true);
            x2.requires_grad_(true);
            var (y1, y2) = stack.Forward(x1, x2);
            // A loss that weighs the two outputs differently, so both gradients paths matter.
            (y1.square().sum() + (y2 * y2.sin()).sum()).backward();
            results.Add((y1.detach(), y2.detach(), x1.grad!, x2.grad!, stack.parameters().Select(p => p.grad!).ToArray()));
        }
        var (r, p) = (results[0], results[1]);
        Assert.True(RelativeError(r.Y1, p.Y1) < 1e-6);
        Assert.True(RelativeError(r.Y2, p.Y2) < 1e-6);
        Assert.True(RelativeError(r.Dx1, p.Dx1) < 1e-5);
        Assert.True(RelativeError(r.Dx2, p.Dx2) < 1e-5);
        Assert.Equal(p.Dp.Length, r.Dp.Length);
        for (var i = 0; i < p.Dp.Length; i++)
            Assert.True(RelativeError(r.Dp[i], p.Dp[i]) < 1e-5, $"parameter {i}");
    }

    [Fact]
    public void ParameterGradientsReachAnInputThatNeedsNone()
    {
        using var reversible = Stack(7, depth: 2, reversible: true);
        using var scope = NewDisposeScope();
        var (x1, x2) = Inputs(8);
        var (y1, y2) = reversible.Forward(x1, x2);
        (y1 + y2).sum().backward();
        Assert.All(reversible.parameters(), q => Assert.True(q.grad is not null && q.grad.abs().sum().item<float>() > 0));
    }

    [Fact]
    public void AutogradGradReachesParametersThroughTheStack()
    {
        using var reversible = Stack(11, depth: 2, reversible: true);
        using var plain = Stack(11, depth: 2, reversible: false);
        using var scope = NewDisposeScope();
        var grads = new List<IList<Tensor>>();
        foreach (var stack in new[] { reversible, plain })
        {
            var (x1, x2) = Inputs(12);
            var (y1, y2) = stack.Forward(x1, x2);
            grads.Add(torch.autograd.grad([(y1 * y2).sum()], stack.parameters().Select(p => (Tensor)p).ToList()));
        }
        for (var i = 0; i < grads[1].Count; i++)
            Assert.True(RelativeError(grads[0][i], grads[1][i]) < 1e-5, $"parameter {i}");
    }

    [Fact]
    public void WithoutGradTheStackIsThePlainComposition()
    {
        using var reversible = Stack(13, depth: 3, reversible: true);
        using var plain = Stack(13, depth: 3, reversible: false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (x1, x2) = Inputs(14);
        var (a1, a2) = reversible.Forward(x1, x2);
        var (b1, b2) = plain.Forward(x1, x2);
        Assert.True(a1.equal(b1).all().item<bool>() && a2.equal(b2).all().item<bool>());
    }

    [Fact]
    public void ChunkedFeedForwardEqualsUnchunked()
    {
        using var g = Seeded.Generator(9);
        var mlp = new Mlp(D, 16, MlpActivation.SwiGlu, useBias: true, generator: g);
        using var chunked = new ChunkedFeedForward(mlp, chunkLength: 3);
        using var scope = NewDisposeScope();
        var x = randn(new long[] { 2, 11, D }, generator: g);
        Assert.True((chunked.call(x) - mlp.call(x)).abs().max().item<float>() < 1e-6);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ChunkedFeedForward(mlp, 0));
    }
}
