using System.Text.RegularExpressions;

namespace Loom.Data.Evaluation;

/// <summary>How BLEU treats an n-gram order with no matches.</summary>
public enum BleuSmoothing
{
    /// <summary>No smoothing: a zero precision makes the score (practically) 0, as sacreBLEU's <c>none</c>.</summary>
    None,

    /// <summary>
    /// sacreBLEU's default <c>exp</c> (NIST mteval-v13a) smoothing: the k-th order with no matches
    /// gets precision <c>1 / (2^k * total)</c>.
    /// </summary>
    Exp,
}

/// <summary>Settings of <see cref="Bleu"/>; the defaults are sacreBLEU's.</summary>
public sealed record BleuOptions
{
    private readonly int maxOrder = 4;

    /// <summary>The largest n-gram order (4 by default).</summary>
    public int MaxOrder
    {
        get => maxOrder;
        init => maxOrder = value is >= 1 and <= 16 ? value : throw new ArgumentException($"BLEU max order = {value} must be in [1, 16]");
    }

    /// <summary>The smoothing of zero-match orders; <see cref="BleuSmoothing.Exp"/> by default, as sacreBLEU.</summary>
    public BleuSmoothing Smoothing
    {
        get;
        init => field = Enum.IsDefined(value) ? value : throw new ArgumentException($"unknown BLEU smoothing {value}");
    } = BleuSmoothing.Exp;

    /// <summary>Whether to lowercase before tokenising (false by default).</summary>
    public bool Lowercase { get; init; }
}

/// <summary>The parts of a corpus BLEU score, as sacreBLEU's <c>BLEUScore</c>.</summary>
/// <param name="Score">BLEU in [0, 100].</param>
/// <param name="Precisions">The (smoothed) n-gram precisions in [0, 100], order 1 first.</param>
/// <param name="BrevityPenalty">The brevity penalty in [0, 1].</param>
/// <param name="HypothesisLength">Tokens in all hypotheses.</param>
/// <param name="ReferenceLength">The summed closest reference lengths.</param>
/// <param name="Matches">Clipped n-gram matches per order.</param>
/// <param name="Totals">Hypothesis n-grams per order.</param>
public sealed record BleuScore(
    double Score,
    IReadOnlyList<double> Precisions,
    double BrevityPenalty,
    long HypothesisLength,
    long ReferenceLength,
    IReadOnlyList<long> Matches,
    IReadOnlyList<long> Totals);

/// <summary>
/// Corpus BLEU compatible with sacreBLEU's <c>corpus_bleu</c> defaults (13a tokenisation, 4-grams,
/// closest reference length for the brevity penalty, exp smoothing), as seqio's <c>bleu</c> metric.
/// </summary>
/// <remarks>
/// Statistics are summed over the corpus before the geometric mean, so corpus BLEU is not the mean of
/// sentence BLEUs.
/// </remarks>
public sealed partial class Bleu : IMetric
{
    // sacreBLEU's stand-in for log(0): large enough to drive exp() to 0 without NaN or infinity.
    private const double LogZero = -9999999999;

    /// <summary>Creates the metric.</summary>
    /// <param name="options">The settings; null = sacreBLEU's defaults.</param>
    public Bleu(BleuOptions? options = null) => Options = options ?? new BleuOptions();

    /// <summary>The settings.</summary>
    public BleuOptions Options { get; }

    /// <inheritdoc/>
    public string Name => "bleu";

    /// <inheritdoc/>
    /// <remarks>Returns corpus BLEU in [0, 100] with one reference per example.</remarks>
    public MetricResult Compute(IReadOnlyList<string> targets, IReadOnlyList<string> predictions)
    {
        MetricArguments.CheckAligned(targets, predictions);
        return new(Name, Corpus(predictions, [targets]).Score);
    }

    /// <summary>Corpus BLEU with one or more references per hypothesis.</summary>
    /// <param name="hypotheses">The system outputs.</param>
    /// <param name="referenceStreams">
    /// One or more reference streams, each aligned with <paramref name="hypotheses"/> (sacreBLEU's
    /// <c>refs</c> layout: <c>referenceStreams[k][i]</c> is the k-th reference of hypothesis i).
    /// </param>
    /// <returns>The score and its statistics.</returns>
    /// <exception cref="ArgumentException">There are no streams, or a stream's length differs from the hypotheses'.</exception>
    public BleuScore Corpus(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string>> referenceStreams)
    {
        ArgumentNullException.ThrowIfNull(hypotheses);
        ArgumentNullException.ThrowIfNull(referenceStreams);
        if (referenceStreams.Count == 0) throw new ArgumentException("BLEU needs at least one reference stream", nameof(referenceStreams));
        foreach (var stream in referenceStreams) MetricArguments.CheckAligned(stream, hypotheses);

        int n = Options.MaxOrder;
        var matches = new long[n];
        var totals = new long[n];
        long hypLength = 0, refLength = 0;
        for (int i = 0; i < hypotheses.Count; i++)
        {
            var hyp = Tokenize(hypotheses[i]);
            var maxRefCounts = new Dictionary<string, int>(StringComparer.Ordinal);
            var refLengths = new int[referenceStreams.Count];
            for (int k = 0; k < referenceStreams.Count; k++)
            {
                var reference = Tokenize(referenceStreams[k][i]);
                refLengths[k] = reference.Length;
                // A hypothesis n-gram is credited at most as often as it occurs in any single reference.
                foreach (var (gram, count) in NGramCounts(reference, n))
                    if (!maxRefCounts.TryGetValue(gram, out int seen) || count > seen) maxRefCounts[gram] = count;
            }
            hypLength += hyp.Length;
            refLength += ClosestLength(hyp.Length, refLengths);
            foreach (var (gram, count) in NGramCounts(hyp, n))
            {
                int order = CountSpaces(gram) + 1;
                totals[order - 1] += count;
                if (maxRefCounts.TryGetValue(gram, out int refCount)) matches[order - 1] += Math.Min(count, refCount);
            }
        }
        return Score(matches, totals, hypLength, refLength);
    }

    /// <summary>sacreBLEU's <c>13a</c> tokenizer (mteval-v13a.pl), with this instance's lowercasing.</summary>
    /// <param name="text">A segment.</param>
    /// <returns>The tokens.</returns>
    public string[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Tokenize13a(Options.Lowercase ? text.ToLowerInvariant() : text);
    }

    /// <summary>sacreBLEU's <c>13a</c> tokenizer (mteval-v13a.pl): splits off punctuation and symbols, and periods and commas except beside digits.</summary>
    /// <param name="text">A segment.</param>
    /// <returns>The tokens.</returns>
    public static string[] Tokenize13a(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string line = text.Replace("<skipped>", "", StringComparison.Ordinal)
            .Replace("-\n", "", StringComparison.Ordinal)
            .Replace("\n", " ", StringComparison.Ordinal);
        if (line.Contains('&', StringComparison.Ordinal))
        {
            line = line.Replace("&quot;", "\"", StringComparison.Ordinal)
                .Replace("&amp;", "&", StringComparison.Ordinal)
                .Replace("&lt;", "<", StringComparison.Ordinal)
                .Replace("&gt;", ">", StringComparison.Ordinal);
        }
        line = $" {line} ";
        line = Symbols().Replace(line, " $1 ");
        line = PeriodCommaAfterNonDigit().Replace(line, "$1 $2 ");
        line = PeriodCommaBeforeNonDigit().Replace(line, " $1 $2");
        line = DashAfterDigit().Replace(line, "$1 $2 ");
        return line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
    }

    private BleuScore Score(long[] matches, long[] totals, long hypLength, long refLength)
    {
        int n = matches.Length;
        var precisions = new double[n];
        double bp = hypLength < refLength ? (hypLength > 0 ? Math.Exp(1 - (double)refLength / hypLength) : 0) : 1;
        if (totals[0] == 0) return new(0, precisions, bp, hypLength, refLength, matches, totals);
        double smooth = 1;
        for (int k = 0; k < n; k++)
        {
            // Orders longer than every hypothesis keep precision 0 (and so the score 0), as sacreBLEU without effective order.
            if (totals[k] == 0) break;
            if (matches[k] > 0) precisions[k] = 100.0 * matches[k] / totals[k];
            else if (Options.Smoothing == BleuSmoothing.Exp)
            {
                smooth *= 2;
                precisions[k] = 100.0 / (smooth * totals[k]);
            }
        }
        double logSum = 0;
        foreach (double p in precisions) logSum += p > 0 ? Math.Log(p) : LogZero;
        return new(bp * Math.Exp(logSum / n), precisions, bp, hypLength, refLength, matches, totals);
    }

    /// <summary>The reference length closest to the hypothesis length, the shorter on ties.</summary>
    private static int ClosestLength(int hypLength, int[] refLengths)
    {
        int best = refLengths[0];
        foreach (int len in refLengths)
        {
            int diff = Math.Abs(hypLength - len), bestDiff = Math.Abs(hypLength - best);
            if (diff < bestDiff || (diff == bestDiff && len < best)) best = len;
        }
        return best;
    }

    /// <summary>Counts the n-grams of orders 1..maxOrder, keyed by their space-joined tokens (tokens hold no spaces).</summary>
    private static Dictionary<string, int> NGramCounts(string[] tokens, int maxOrder)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int order = 1; order <= maxOrder; order++)
            for (int start = 0; start + order <= tokens.Length; start++)
            {
                string gram = string.Join(' ', tokens, start, order);
                counts[gram] = counts.GetValueOrDefault(gram) + 1;
            }
        return counts;
    }

    private static int CountSpaces(string gram)
    {
        int spaces = 0;
        foreach (char c in gram) if (c == ' ') spaces++;
        return spaces;
    }

    // The four rules of sacreBLEU's TokenizerRegexp, in order. The first class holds the ASCII ranges
    // {-~, [-`, space-&, (-+, :-@ and /: every symbol except ' , - . and the alphanumerics.
    [GeneratedRegex(@"([\{-~\[-` -&\(-\+:-@/])", RegexOptions.CultureInvariant)]
    private static partial Regex Symbols();

    [GeneratedRegex(@"([^0-9])([\.,])", RegexOptions.CultureInvariant)]
    private static partial Regex PeriodCommaAfterNonDigit();

    [GeneratedRegex(@"([\.,])([^0-9])", RegexOptions.CultureInvariant)]
    private static partial Regex PeriodCommaBeforeNonDigit();

    [GeneratedRegex(@"([0-9])(-)", RegexOptions.CultureInvariant)]
    private static partial Regex DashAfterDigit();
}
