namespace Loom.Serving.Metrics;

/// <summary>
/// Events per second over the last few whole seconds: counts land in one-second buckets, and the
/// rate is the sum of the last <c>seconds</c> completed buckets over that many seconds (so it lags
/// by less than a second and is not skewed by a partly elapsed one).
/// </summary>
internal sealed class ThroughputWindow
{
    private readonly TimeProvider time;
    private readonly long start;
    private readonly int seconds;
    private readonly long[] buckets;      // counts, indexed by second % length
    private readonly long[] bucketSecond; // which second each bucket currently holds
    private readonly Lock gate = new();

    public ThroughputWindow(TimeProvider time, int seconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seconds);
        this.time = time ?? throw new ArgumentNullException(nameof(time));
        this.seconds = seconds;
        buckets = new long[seconds + 1];
        bucketSecond = new long[seconds + 1];
        Array.Fill(bucketSecond, -1);
        start = time.GetTimestamp();
    }

    public void Add(long count)
    {
        long second = Now();
        int slot = (int)(second % buckets.Length);
        lock (gate)
        {
            if (bucketSecond[slot] != second)
            {
                bucketSecond[slot] = second;
                buckets[slot] = 0;
            }
            buckets[slot] += count;
        }
    }

    /// <summary>Events per second over the last completed seconds of the window.</summary>
    public double PerSecond()
    {
        long now = Now();
        long total = 0;
        lock (gate)
        {
            for (int i = 0; i < buckets.Length; i++)
                if (bucketSecond[i] >= now - seconds && bucketSecond[i] < now)
                    total += buckets[i];
        }
        return (double)total / seconds;
    }

    private long Now() => (long)time.GetElapsedTime(start).TotalSeconds;
}
