namespace Loom.Data.Evaluation;

/// <summary>A named metric value, as a seqio metric function's dictionary entry.</summary>
/// <param name="Name">The metric's name, such as <c>bleu</c> or <c>rougeL</c>.</param>
/// <param name="Value">The value, on the scale the metric documents (percentages for the text metrics, as seqio reports them).</param>
public sealed record MetricResult(string Name, double Value);

/// <summary>A metric over aligned lists of reference targets and model predictions, as seqio's <c>metric_fns</c>.</summary>
public interface IMetric
{
    /// <summary>The name the result carries.</summary>
    string Name { get; }

    /// <summary>Scores predictions against targets.</summary>
    /// <param name="targets">The reference strings, one per example.</param>
    /// <param name="predictions">The predicted strings, aligned with <paramref name="targets"/>.</param>
    /// <returns>The metric's value.</returns>
    /// <exception cref="ArgumentException">The lists differ in length.</exception>
    MetricResult Compute(IReadOnlyList<string> targets, IReadOnlyList<string> predictions);
}

/// <summary>Argument checks shared by the metrics.</summary>
internal static class MetricArguments
{
    public static void CheckAligned<T, U>(IReadOnlyList<T> targets, IReadOnlyList<U> predictions)
    {
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(predictions);
        if (targets.Count != predictions.Count)
            throw new ArgumentException($"there are {targets.Count} targets but {predictions.Count} predictions; each prediction needs one target", nameof(predictions));
    }
}
