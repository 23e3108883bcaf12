using Loom.Distributed;
using Loom.Training.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Training.Tests.Optimization;

public sealed class DynamicLossScalerTests
{
    private static Parameter WithGradient(params float[] gradient)
    {
        var p = new Parameter(zeros(gradient.Length));
        p.grad = tensor(gradient);
        return p;
    }

    [Fact]
    public void FiniteGradientsAreDividedByTheScaleWhichDoublesAfterTheGrowthInterval()
    {
        using var scope = NewDisposeScope();
        using var world = new SingleProcessCommunicator();
        var scaler = new DynamicLossScaler(8, growthInterval: 2);
        Assert.Equal(12.0, scaler.ScaleLoss(tensor(1.5f)).item<float>());
        var p = WithGradient(8, -16);
        Assert.True(scaler.Unscale([p], world));
        Assert.Equal([1f, -2f], p.grad!.data<float>().ToArray());
        Assert.Equal(8, scaler.Scale);
        Assert.True(scaler.Unscale([WithGradient(1)], world));
        Assert.Equal(16, scaler.Scale); // two clean updates in a row
    }

    [Fact]
    public void AnOverflowDropsTheGradientsHalvesTheScaleAndRestartsTheCount()
    {
        using var scope = NewDisposeScope();
        using var world = new SingleProcessCommunicator();
        var scaler = new DynamicLossScaler(8, growthInterval: 2);
        Assert.True(scaler.Unscale([WithGradient(1)], world));
        var overflowed = WithGradient(1, float.PositiveInfinity);
        var clean = WithGradient(3);
        Assert.False(scaler.Unscale([overflowed, clean], world));
        Assert.Null(overflowed.grad);
        Assert.Null(clean.grad); // the whole update is skipped, not just the overflowing tensor
        Assert.Equal((4.0, 1L), (scaler.Scale, scaler.Skipped));
        Assert.False(scaler.Unscale([WithGradient(float.NaN)], world));
        Assert.True(scaler.Unscale([WithGradient(1)], world));
        Assert.Equal(2, scaler.Scale); // one clean update since the overflow: no growth yet
        Assert.Throws<ArgumentOutOfRangeException>(() => new DynamicLossScaler(0.5, 10));
    }
}
