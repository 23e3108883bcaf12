namespace Loom.Training.Optimization;

/// <summary>Builds a learning-rate schedule from its configuration name.</summary>
public static class LearningRateSchedules
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["rsqrt", "cosine", "constant"];

    /// <summary>
    /// Creates <c>"rsqrt"</c> (<see cref="RsqrtSchedule"/>), <c>"cosine"</c> (<see cref="CosineSchedule"/>)
    /// or <c>"constant"</c> (<see cref="ConstantSchedule"/>); names are case-insensitive.
    /// </summary>
    /// <param name="name">The schedule name.</param>
    /// <param name="peakLearningRate">Peak rate, reached at the end of warm-up.</param>
    /// <param name="warmupSteps">Updates of linear warm-up.</param>
    /// <param name="totalSteps">Cosine only: the update at which the rate reaches <paramref name="minLearningRate"/>.</param>
    /// <param name="minLearningRate">Cosine only: the final rate.</param>
    /// <param name="decayStartStep">Rsqrt only: where 1/√n decay begins; null means at the end of warm-up (at least 1).</param>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the valid ones), or a value is out of range.</exception>
    public static ILearningRateSchedule Create(
        string name, double peakLearningRate, long warmupSteps, long totalSteps, double minLearningRate = 0, long? decayStartStep = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "rsqrt" => new RsqrtSchedule(peakLearningRate, warmupSteps, decayStartStep ?? Math.Max(warmupSteps, 1)),
            "cosine" => new CosineSchedule(peakLearningRate, warmupSteps, totalSteps, minLearningRate),
            "constant" => new ConstantSchedule(peakLearningRate, warmupSteps),
            _ => throw new ArgumentException($"unknown learning-rate schedule '{name}': valid names are {string.Join(", ", Names)}", nameof(name)),
        };
    }
}
