namespace Loom.Inference.Tests.Speculative;

/// <summary>Pearson's chi-square goodness-of-fit test, for checking sampled tokens against an exact distribution.</summary>
internal static class ChiSquare
{
    /// <summary>
    /// The statistic Σ (observed − expected)² / expected and its degrees of freedom, after merging the cells expected
    /// fewer than 5 times into one (the usual validity rule).
    /// </summary>
    public static (double Statistic, int DegreesOfFreedom) Statistic(IReadOnlyList<long> observed, IReadOnlyList<double> probabilities)
    {
        long n = observed.Sum();
        double statistic = 0, mergedExpected = 0;
        long mergedObserved = 0;
        int cells = 0;
        for (int i = 0; i < observed.Count; i++)
        {
            double expected = n * probabilities[i];
            if (expected < 5)
            {
                mergedExpected += expected;
                mergedObserved += observed[i];
                continue;
            }
            statistic += (observed[i] - expected) * (observed[i] - expected) / expected;
            cells++;
        }
        if (mergedExpected > 0)
        {
            statistic += (mergedObserved - mergedExpected) * (mergedObserved - mergedExpected) / Math.Max(mergedExpected, 1e-9);
            cells++;
        }
        return (statistic, cells - 1);
    }

    /// <summary>
    /// The 0.999 quantile of the chi-square distribution (significance 0.001), by the Wilson–Hilferty approximation
    /// (accurate to about 1% from 3 degrees of freedom up).
    /// </summary>
    public static double Critical(int degreesOfFreedom)
    {
        const double z = 3.0902; // the standard normal's 0.999 quantile
        double k = degreesOfFreedom, a = 2 / (9 * k);
        return k * Math.Pow(1 - a + z * Math.Sqrt(a), 3);
    }
}
