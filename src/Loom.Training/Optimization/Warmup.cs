namespace Loom.Training.Optimization;

/// <summary>The linear warm-up factor that every schedule here shares.</summary>
internal static class Warmup
{
    /// <summary>
    /// min(1, n / warmupSteps) for 1-based update n, or 1 without warm-up. Counting from n = 1 means the
    /// first update already moves the parameters (lr = peak / warmupSteps) and update n = warmupSteps is at peak.
    /// </summary>
    public static double Factor(long n, long warmupSteps) =>
        warmupSteps == 0 ? 1.0 : Math.Min(1.0, (double)n / warmupSteps);

    /// <summary>Checks the step argument of <see cref="ILearningRateSchedule.At"/> and returns n = step + 1.</summary>
    public static long UpdateNumber(long step) => OptionCheck.NonNegative(step, nameof(step)) + 1;
}
