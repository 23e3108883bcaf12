using Loom.Training.Optimization;

namespace Loom.Training.Tests.Optimization;

public class ScheduleTests
{
    private static void Near(double expected, double actual) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-15 * Math.Max(1, Math.Abs(expected)), $"expected {expected}, got {actual}");

    [Fact]
    public void RsqrtWithPaLMsNumbersIsOneOverRootOfMaxStepAndTenThousand()
    {
        var palm = new RsqrtSchedule(1e-2, warmupSteps: 0, decayStartStep: 10_000);
        Near(1e-2, palm.At(0));
        Near(1e-2, palm.At(9_999));         // update 10,000: last of the plateau
        Near(5e-3, palm.At(39_999));        // update 40,000: 1/√40,000
        Near(1e-3, palm.At(999_999));       // update 10⁶
        for (long step = 0; step < 50_000; step += 997)
            Near(1 / Math.Sqrt(Math.Max(step + 1, 10_000)), palm.At(step));
    }

    [Fact]
    public void RsqrtWarmsUpLinearlyHoldsThenDecays()
    {
        var s = new RsqrtSchedule(1.0, warmupSteps: 100, decayStartStep: 400);
        Near(0.01, s.At(0));
        Near(0.5, s.At(49));
        Near(1.0, s.At(99));
        Near(1.0, s.At(399));
        Near(0.5, s.At(1_599));
        Near(Math.Sqrt(400.0 / 401), s.At(400));
    }

    [Fact]
    public void CosineWarmsUpThenFollowsHalfACosineToTheMinimum()
    {
        var s = new CosineSchedule(1.0, warmupSteps: 10, totalSteps: 110, minLearningRate: 0.1);
        Near(0.1, s.At(0));                 // update 1 of 10 warm-up updates
        Near(0.5, s.At(4));
        Near(1.0, s.At(9));
        Near(0.55, s.At(59));               // half-way through decay
        Near(0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * 0.25)), s.At(34));
        Near(0.1, s.At(109));
        Near(0.1, s.At(10_000));
    }

    [Fact]
    public void CosineWithoutWarmupStartsJustBelowPeak()
    {
        var s = new CosineSchedule(2.0, warmupSteps: 0, totalSteps: 4);
        Near(1.0 * (1 + Math.Cos(Math.PI * 0.25)), s.At(0));
        Near(1.0, s.At(1));
        Near(0.0, s.At(3));
    }

    [Fact]
    public void ConstantWarmsUpThenHolds()
    {
        Near(3e-4, new ConstantSchedule(3e-4).At(0));
        Near(3e-4, new ConstantSchedule(3e-4).At(1_000_000));
        var s = new ConstantSchedule(4.0, warmupSteps: 4);
        Near(1.0, s.At(0));
        Near(4.0, s.At(3));
        Near(4.0, s.At(100));
    }

    [Fact]
    public void ScheduleArgumentsAreValidatedByName()
    {
        Assert.Equal("WarmupSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new CosineSchedule(1, 10, 10)).ParamName);
        Assert.Equal("MinLearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new CosineSchedule(1, 0, 10, 2)).ParamName);
        Assert.Equal("PeakLearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new ConstantSchedule(-1)).ParamName);
        Assert.Equal("DecayStartStep", Assert.Throws<ArgumentOutOfRangeException>(() => new RsqrtSchedule(1, 0, 0)).ParamName);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new RsqrtSchedule(1, 500, 400));
        Assert.Equal("WarmupSteps", e.ParamName);
        Assert.Contains("<= DecayStartStep (400)", e.Message);
        Assert.Equal("step", Assert.Throws<ArgumentOutOfRangeException>(() => new ConstantSchedule(1).At(-1)).ParamName);
    }

    [Fact]
    public void FactoryBuildsEachScheduleAndListsValidNames()
    {
        Assert.Equal(new RsqrtSchedule(1e-2, 100, 100), LearningRateSchedules.Create("rsqrt", 1e-2, 100, 0));
        Assert.Equal(new RsqrtSchedule(1e-2, 0, 10_000), LearningRateSchedules.Create("RSQRT", 1e-2, 0, 0, decayStartStep: 10_000));
        Assert.Equal(new CosineSchedule(3e-4, 10, 1000, 3e-5), LearningRateSchedules.Create("cosine", 3e-4, 10, 1000, 3e-5));
        Assert.Equal(new ConstantSchedule(3e-4, 10), LearningRateSchedules.Create("constant", 3e-4, 10, 1000));
        var e = Assert.Throws<ArgumentException>(() => LearningRateSchedules.Create("linear", 1, 0, 10));
        Assert.Contains("'linear'", e.Message);
        Assert.Contains("rsqrt, cosine, constant", e.Message);
    }
}
