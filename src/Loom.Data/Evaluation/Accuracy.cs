namespace Loom.Data.Evaluation;

/// <summary>
/// The percentage of predictions equal to their targets, as seqio's <c>accuracy</c>
/// (<c>100 * sklearn.metrics.accuracy_score</c>). Strings compare ordinally, with no normalisation.
/// </summary>
public sealed class Accuracy : IMetric
{
    /// <inheritdoc/>
    public string Name => "accuracy";

    /// <inheritdoc/>
    /// <remarks>An empty list scores 0, not NaN, so that an empty evaluation split does not poison aggregates.</remarks>
    public MetricResult Compute(IReadOnlyList<string> targets, IReadOnlyList<string> predictions) =>
        new(Name, Of(targets, predictions, StringComparer.Ordinal));

    /// <summary>The percentage of positions where the prediction equals the target, for any element type (strings, token ids, labels).</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="targets">The reference values.</param>
    /// <param name="predictions">The predicted values, aligned with <paramref name="targets"/>.</param>
    /// <param name="comparer">How to compare; null = the default equality of <typeparamref name="T"/>.</param>
    /// <returns>The accuracy in [0, 100]; 0 for empty lists.</returns>
    /// <exception cref="ArgumentException">The lists differ in length.</exception>
    public static double Of<T>(IReadOnlyList<T> targets, IReadOnlyList<T> predictions, IEqualityComparer<T>? comparer = null)
    {
        MetricArguments.CheckAligned(targets, predictions);
        if (targets.Count == 0) return 0;
        comparer ??= EqualityComparer<T>.Default;
        int correct = 0;
        for (int i = 0; i < targets.Count; i++)
            if (comparer.Equals(targets[i], predictions[i])) correct++;
        return 100.0 * correct / targets.Count;
    }
}
