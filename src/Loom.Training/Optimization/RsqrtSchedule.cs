namespace Loom.Training.Optimization;

/// <summary>
/// Warm-up, a constant plateau, then inverse-square-root decay. For 1-based update n:
/// <code>lr(n) = peak · min(1, n / WarmupSteps) · √(DecayStartStep / max(n, DecayStartStep))</code>
/// The rate is continuous: it reaches peak at n = WarmupSteps, holds it until n = DecayStartStep, and is
/// peak / 2 at n = 4·DecayStartStep. PaLM (lr 1e-2 for the first 10,000 steps, then 1/√k) is
/// <c>new RsqrtSchedule(1e-2, warmupSteps: 0, decayStartStep: 10_000)</c>: lr(n) = 1/√max(n, 10⁴).
/// </summary>
public sealed record RsqrtSchedule : ILearningRateSchedule
{
    /// <summary>Creates the schedule.</summary>
    /// <param name="peakLearningRate">The plateau rate; finite and &gt;= 0.</param>
    /// <param name="warmupSteps">Updates of linear warm-up, &gt;= 0 and at most <paramref name="decayStartStep"/>.</param>
    /// <param name="decayStartStep">The update after which 1/√n decay begins; &gt;= 1.</param>
    public RsqrtSchedule(double peakLearningRate, long warmupSteps, long decayStartStep)
    {
        PeakLearningRate = OptionCheck.NonNegative(peakLearningRate, nameof(PeakLearningRate));
        WarmupSteps = OptionCheck.NonNegative(warmupSteps, nameof(WarmupSteps));
        DecayStartStep = OptionCheck.Positive(decayStartStep, nameof(DecayStartStep));
        if (WarmupSteps > DecayStartStep)
            throw OptionCheck.Fail(nameof(WarmupSteps), warmupSteps, $"<= DecayStartStep ({decayStartStep})");
    }

    /// <summary>The plateau rate.</summary>
    public double PeakLearningRate { get; }

    /// <summary>Updates of linear warm-up; 0 for none.</summary>
    public long WarmupSteps { get; }

    /// <summary>The update after which 1/√n decay begins.</summary>
    public long DecayStartStep { get; }

    /// <inheritdoc/>
    public double At(long step)
    {
        long n = Warmup.UpdateNumber(step);
        return PeakLearningRate * Warmup.Factor(n, WarmupSteps) * Math.Sqrt((double)DecayStartStep / Math.Max(n, DecayStartStep));
    }
}
