using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Data.Evaluation;

/// <summary>
/// The percentage of predictions that match their targets exactly, optionally after SQuAD's answer
/// normalisation (as seqio's <c>squad</c> metric's <c>em</c>).
/// </summary>
public sealed partial class ExactMatch : IMetric
{
    /// <summary>Creates the metric.</summary>
    /// <param name="normalize">Whether to compare <see cref="NormalizeSquad"/>'d strings rather than the raw ones.</param>
    public ExactMatch(bool normalize = true) => Normalize = normalize;

    /// <summary>Whether strings are compared after <see cref="NormalizeSquad"/>.</summary>
    public bool Normalize { get; }

    /// <inheritdoc/>
    public string Name => "exact_match";

    /// <inheritdoc/>
    /// <remarks>Returns a percentage in [0, 100]; 0 for empty lists.</remarks>
    public MetricResult Compute(IReadOnlyList<string> targets, IReadOnlyList<string> predictions)
    {
        MetricArguments.CheckAligned(targets, predictions);
        if (targets.Count == 0) return new(Name, 0);
        int matches = 0;
        for (int i = 0; i < targets.Count; i++)
            if (Matches(targets[i], predictions[i], Normalize)) matches++;
        return new(Name, 100.0 * matches / targets.Count);
    }

    /// <summary>Whether a prediction matches a target.</summary>
    /// <param name="target">The reference.</param>
    /// <param name="prediction">The prediction.</param>
    /// <param name="normalize">Whether to compare <see cref="NormalizeSquad"/>'d strings.</param>
    /// <returns>True where they are equal (ordinally).</returns>
    public static bool Matches(string target, string prediction, bool normalize = true)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prediction);
        return normalize
            ? string.Equals(NormalizeSquad(target), NormalizeSquad(prediction), StringComparison.Ordinal)
            : string.Equals(target, prediction, StringComparison.Ordinal);
    }

    /// <summary>
    /// SQuAD v1.1's <c>normalize_answer</c>: lowercases, deletes ASCII punctuation (Python's
    /// <c>string.punctuation</c>), replaces the words <c>a</c>, <c>an</c> and <c>the</c> by spaces, and
    /// collapses whitespace to single spaces with none at the ends.
    /// </summary>
    /// <param name="text">The answer text.</param>
    /// <returns>The normalised text.</returns>
    public static string NormalizeSquad(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // Same order as the reference script; punctuation goes before articles, so "the," becomes "the" and is then removed.
        var sb = new StringBuilder(text.Length);
        foreach (char c in text.ToLowerInvariant())
            if (!IsAsciiPunctuation(c)) sb.Append(c);
        string noArticles = Articles().Replace(sb.ToString(), " ");
        return string.Join(' ', noArticles.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    // Python's string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
    private static bool IsAsciiPunctuation(char c) =>
        c is >= '!' and <= '/' or >= ':' and <= '@' or >= '[' and <= '`' or >= '{' and <= '~';

    [GeneratedRegex(@"\b(a|an|the)\b", RegexOptions.CultureInvariant)]
    private static partial Regex Articles();
}
