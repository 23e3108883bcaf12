using Loom.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;

namespace Loom.Training.Tests.Optimization;

public class GradientClippingTests
{
    private static List<torch.Tensor> Gradients(ulong seed)
    {
        using var gen = new torch.Generator(seed);
        return [torch.randn([4, 5], generator: gen), torch.randn([7], generator: gen), torch.randn([2, 3, 2], generator: gen)];
    }

    private static double DirectNorm(IEnumerable<torch.Tensor> grads) =>
        Math.Sqrt(grads.Sum(g => TinyModel.Values(g).Sum(v => (double)v * v)));

    [Fact]
    public void ScalesAllGradientsByTheGlobalNormWhenAboveTheLimit()
    {
        using var scope = torch.NewDisposeScope();
        var grads = Gradients(1);
        var before = grads.Select(TinyModel.Values).ToList();
        double expectedNorm = DirectNorm(grads);
        const double maxNorm = 1.5;
        Assert.True(expectedNorm > 3 * maxNorm, $"test data norm {expectedNorm} should exceed the limit");

        var norm = GradientClipping.ClipGlobalNorm(grads, maxNorm);

        Assert.Equal(0, norm.dim());
        Assert.Equal(expectedNorm, norm.item<float>(), expectedNorm * 1e-6);
        double coefficient = maxNorm / (expectedNorm + 1e-6);
        foreach (var (g, b) in grads.Zip(before))
            Assert.Equal(b.Select(v => v * coefficient), TinyModel.Values(g).Select(v => (double)v), new ToleranceComparer(1e-6));
        Assert.Equal(maxNorm, DirectNorm(grads), 1e-5);
    }

    [Fact]
    public void LeavesGradientsUnchangedWhenBelowTheLimit()
    {
        using var scope = torch.NewDisposeScope();
        var grads = Gradients(2);
        var before = grads.Select(TinyModel.Values).ToList();
        double expectedNorm = DirectNorm(grads);

        var norm = GradientClipping.ClipGlobalNorm(grads, expectedNorm * 2);

        Assert.Equal(expectedNorm, norm.item<float>(), expectedNorm * 1e-6);
        foreach (var (g, b) in grads.Zip(before))
            Assert.Equal(b, TinyModel.Values(g));
    }

    [Fact]
    public void ParameterOverloadSkipsParametersWithoutGradient()
    {
        using var scope = torch.NewDisposeScope();
        var grads = Gradients(3);
        var parameters = grads.Select(g => new Parameter(torch.zeros_like(g))).ToList();
        foreach (var (p, g) in parameters.Zip(grads))
            p.grad = g.clone();
        parameters.Add(new Parameter(torch.zeros(3)));
        double expectedNorm = DirectNorm(grads);

        var norm = GradientClipping.ClipGlobalNormOfParameters(parameters, 1.0);

        Assert.Equal(expectedNorm, norm.item<float>(), expectedNorm * 1e-6);
        Assert.Equal(1.0, DirectNorm(parameters.Take(3).Select(p => p.grad!)), 1e-5);
        Assert.Null(parameters[3].grad);
    }

    [Fact]
    public void ReturnedNormOutlivesTheCallersInnerScopes()
    {
        using var outer = torch.NewDisposeScope();
        torch.Tensor norm;
        var grads = Gradients(4);
        using (torch.NewDisposeScope())
            norm = GradientClipping.ClipGlobalNorm(grads, 1.0).MoveToOuterDisposeScope();
        Assert.False(norm.IsInvalid);
        Assert.Equal(DirectNorm(Gradients(4)), norm.item<float>(), 1e-4);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    public void RefusesNonPositiveMaxNorm(double maxNorm)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => GradientClipping.ClipGlobalNorm([], maxNorm));
        Assert.Equal("maxNorm", e.ParamName);
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
