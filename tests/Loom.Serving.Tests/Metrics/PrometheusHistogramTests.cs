using System.Text;
using Loom.Serving.Metrics;

namespace Loom.Serving.Tests.Metrics;

public class PrometheusHistogramTests
{
    [Fact]
    public void BucketsAreCumulativeWithSumAndCount()
    {
        var histogram = new PrometheusHistogram([0.1, 1, 10]);
        foreach (double v in new[] { 0.05, 0.1, 0.5, 2, 50, 50 }) histogram.Observe(v);
        var text = new StringBuilder();
        histogram.Write(text, "x_seconds", "Test.");
        Assert.Equal("""
            # HELP x_seconds Test.
            # TYPE x_seconds histogram
            x_seconds_bucket{le="0.1"} 2
            x_seconds_bucket{le="1"} 3
            x_seconds_bucket{le="10"} 4
            x_seconds_bucket{le="+Inf"} 6
            x_seconds_sum 102.65
            x_seconds_count 6

            """.Replace("\r", ""), text.ToString());
    }

    [Fact]
    public void BoundsMustIncrease() =>
        Assert.Throws<ArgumentException>(() => new PrometheusHistogram([1, 1]));
}
