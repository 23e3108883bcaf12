using System.Globalization;
using System.Text;

namespace Loom.Serving.Metrics;

/// <summary>A Prometheus histogram: counts of observations at or below each upper bound, their sum and count.</summary>
internal sealed class PrometheusHistogram
{
    private readonly double[] upperBounds;
    private readonly long[] counts; // per bucket, not cumulative; the last is +Inf
    private readonly Lock gate = new();
    private double sum;
    private long count;

    /// <summary>Creates a histogram with the given increasing upper bounds (+Inf is implied).</summary>
    public PrometheusHistogram(IReadOnlyList<double> upperBounds)
    {
        ArgumentNullException.ThrowIfNull(upperBounds);
        for (int i = 1; i < upperBounds.Count; i++)
            if (!(upperBounds[i] > upperBounds[i - 1])) throw new ArgumentException("histogram bounds must increase");
        this.upperBounds = [.. upperBounds];
        counts = new long[upperBounds.Count + 1];
    }

    public void Observe(double value)
    {
        int bucket = Array.FindIndex(upperBounds, bound => value <= bound);
        lock (gate)
        {
            counts[bucket < 0 ? counts.Length - 1 : bucket]++;
            sum += value;
            count++;
        }
    }

    public long Count
    {
        get
        {
            lock (gate) return count;
        }
    }

    /// <summary>Writes the HELP, TYPE, cumulative _bucket lines, _sum and _count.</summary>
    public void Write(StringBuilder text, string name, string help)
    {
        long[] snapshot;
        double total;
        long n;
        lock (gate)
        {
            snapshot = [.. counts];
            total = sum;
            n = count;
        }
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(" histogram\n");
        long cumulative = 0;
        for (int i = 0; i < snapshot.Length; i++)
        {
            cumulative += snapshot[i];
            string bound = i < upperBounds.Length ? PrometheusText.Number(upperBounds[i]) : "+Inf";
            text.Append(name).Append("_bucket{le=\"").Append(bound).Append("\"} ").Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        text.Append(name).Append("_sum ").Append(PrometheusText.Number(total)).Append('\n');
        text.Append(name).Append("_count ").Append(n.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }
}

/// <summary>Prometheus text exposition format 0.0.4, written by hand.</summary>
internal static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static string Number(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : double.IsNaN(value) ? "NaN"
        : value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A metric with one unlabelled sample.</summary>
    public static void Write(StringBuilder text, string name, string type, string help, double value)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        text.Append(name).Append(' ').Append(Number(value)).Append('\n');
    }
}
