namespace Loom.Training.Optimization;

/// <summary>lr(n) = peak · min(1, n / WarmupSteps): linear warm-up, then constant.</summary>
public sealed record ConstantSchedule : ILearningRateSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="peakLearningRate">The rate after warm-up; finite and &gt;= 0.</param>
    /// <param name="warmupSteps">Updates of linear warm-up; 0 for none.</param>
    public ConstantSchedule(double peakLearningRate, long warmupSteps = 0)
    {
        PeakLearningRate = OptionCheck.NonNegative(peakLearningRate, nameof(PeakLearningRate));
        WarmupSteps = OptionCheck.NonNegative(warmupSteps, nameof(WarmupSteps));
    }

    /// <summary>The rate after warm-up.</summary>
    public double PeakLearningRate { get; }

    /// <summary>Updates of linear warm-up; 0 for none.</summary>
    public long WarmupSteps { get; }

    /// <inheritdoc/>
    public double At(long step) => PeakLearningRate * Warmup.Factor(Warmup.UpdateNumber(step), WarmupSteps);
}
