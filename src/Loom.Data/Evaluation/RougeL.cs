using System.Text.RegularExpressions;

namespace Loom.Data.Evaluation;

/// <summary>Precision, recall and F-measure of one ROUGE comparison, each in [0, 1], as rouge-score's <c>Score</c>.</summary>
/// <param name="Precision">LCS length over prediction length.</param>
/// <param name="Recall">LCS length over target length.</param>
/// <param name="FMeasure">The harmonic mean of precision and recall; 0 where both are 0.</param>
public sealed record RougeScore(double Precision, double Recall, double FMeasure);

/// <summary>
/// Sentence-level ROUGE-L (longest common subsequence) as Google's rouge-score <c>rougeL</c> with its
/// default tokenizer and no stemming.
/// </summary>
public sealed partial class RougeL : IMetric
{
    /// <inheritdoc/>
    public string Name => "rougeL";

    /// <inheritdoc/>
    /// <remarks>
    /// Returns the mean sentence F-measure as a percentage in [0, 100] (seqio scales ROUGE by 100); 0
    /// for empty lists.
    /// </remarks>
    public MetricResult Compute(IReadOnlyList<string> targets, IReadOnlyList<string> predictions)
    {
        MetricArguments.CheckAligned(targets, predictions);
        if (targets.Count == 0) return new(Name, 0);
        double sum = 0;
        for (int i = 0; i < targets.Count; i++) sum += Score(targets[i], predictions[i]).FMeasure;
        return new(Name, 100.0 * sum / targets.Count);
    }

    /// <summary>ROUGE-L of one prediction against one target.</summary>
    /// <param name="target">The reference.</param>
    /// <param name="prediction">The prediction.</param>
    /// <returns>Precision, recall and F-measure; all 0 when either side has no tokens.</returns>
    public static RougeScore Score(string target, string prediction)
    {
        var t = Tokenize(target);
        var p = Tokenize(prediction);
        if (t.Length == 0 || p.Length == 0) return new(0, 0, 0);
        int lcs = LcsLength(t, p);
        double precision = (double)lcs / p.Length, recall = (double)lcs / t.Length;
        double f = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        return new(precision, recall, f);
    }

    /// <summary>
    /// rouge-score's default tokenizer: lowercases, turns every run of characters other than ASCII
    /// letters and digits into a space, and splits on spaces.
    /// </summary>
    /// <param name="text">The text.</param>
    /// <returns>The tokens.</returns>
    public static string[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // rouge-score lowercases with Python's str.lower before filtering to [a-z0-9], so non-ASCII letters vanish.
        return NonAlphanumeric().Replace(text.ToLowerInvariant(), " ").Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>The length of the longest common subsequence, by dynamic programming over two rows.</summary>
    /// <typeparam name="T">The token type.</typeparam>
    /// <param name="a">One sequence.</param>
    /// <param name="b">The other sequence.</param>
    /// <returns>The LCS length.</returns>
    public static int LcsLength<T>(IReadOnlyList<T> a, IReadOnlyList<T> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var comparer = EqualityComparer<T>.Default;
        var previous = new int[b.Count + 1];
        var current = new int[b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
        {
            for (int j = 1; j <= b.Count; j++)
                current[j] = comparer.Equals(a[i - 1], b[j - 1]) ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Count];
    }

    [GeneratedRegex("[^a-z0-9]+", RegexOptions.CultureInvariant)]
    private static partial Regex NonAlphanumeric();
}
