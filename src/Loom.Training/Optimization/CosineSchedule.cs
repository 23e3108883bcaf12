namespace Loom.Training.Optimization;

/// <summary>
/// Linear warm-up, then half a cosine from peak down to MinLearningRate at TotalSteps, then constant.
/// For 1-based update n and W = WarmupSteps, T = TotalSteps:
/// <code>
/// n ≤ W:  lr(n) = peak · n / W
/// n &gt; W:  lr(n) = min + (peak − min) · ½ · (1 + cos(π · min(1, (n − W) / (T − W))))
/// </code>
/// so lr(W) = peak, lr(W + (T − W)/2) = (peak + min)/2 and lr(n) = min for n ≥ T.
/// </summary>
public sealed record CosineSchedule : ILearningRateSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="peakLearningRate">The rate at the end of warm-up; finite and &gt;= 0.</param>
    /// <param name="warmupSteps">Updates of linear warm-up; &gt;= 0 and below <paramref name="totalSteps"/>.</param>
    /// <param name="totalSteps">The update at which the rate reaches <paramref name="minLearningRate"/>; &gt;= 1.</param>
    /// <param name="minLearningRate">The final rate; finite, &gt;= 0 and at most <paramref name="peakLearningRate"/>.</param>
    public CosineSchedule(double peakLearningRate, long warmupSteps, long totalSteps, double minLearningRate = 0)
    {
        PeakLearningRate = OptionCheck.NonNegative(peakLearningRate, nameof(PeakLearningRate));
        WarmupSteps = OptionCheck.NonNegative(warmupSteps, nameof(WarmupSteps));
        TotalSteps = OptionCheck.Positive(totalSteps, nameof(TotalSteps));
        MinLearningRate = OptionCheck.NonNegative(minLearningRate, nameof(MinLearningRate));
        if (WarmupSteps >= TotalSteps)
            throw OptionCheck.Fail(nameof(WarmupSteps), warmupSteps, $"< TotalSteps ({totalSteps})");
        if (MinLearningRate > PeakLearningRate)
            throw OptionCheck.Fail(nameof(MinLearningRate), minLearningRate, $"<= PeakLearningRate ({peakLearningRate})");
    }

    /// <summary>The rate at the end of warm-up.</summary>
    public double PeakLearningRate { get; }

    /// <summary>Updates of linear warm-up; 0 for none.</summary>
    public long WarmupSteps { get; }

    /// <summary>The update at which the rate reaches <see cref="MinLearningRate"/>.</summary>
    public long TotalSteps { get; }

    /// <summary>The final rate.</summary>
    public double MinLearningRate { get; }

    /// <inheritdoc/>
    public double At(long step)
    {
        long n = Warmup.UpdateNumber(step);
        if (n <= WarmupSteps)
            return PeakLearningRate * Warmup.Factor(n, WarmupSteps);
        double progress = Math.Min(1.0, (double)(n - WarmupSteps) / (TotalSteps - WarmupSteps));
        return MinLearningRate + (PeakLearningRate - MinLearningRate) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
