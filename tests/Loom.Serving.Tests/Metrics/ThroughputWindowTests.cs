using Loom.Serving.Metrics;

namespace Loom.Serving.Tests.Metrics;

public class ThroughputWindowTests
{
    [Fact]
    public void TheRateCountsOnlyTheLastCompletedSeconds()
    {
        var time = new ManualTime();
        var window = new ThroughputWindow(time, seconds: 2);
        window.Add(10);                              // second 0
        Assert.Equal(0, window.PerSecond());         // second 0 is not over yet
        time.Advance(TimeSpan.FromSeconds(1));
        window.Add(30);                              // second 1
        Assert.Equal(5, window.PerSecond());         // (10) / 2
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(20, window.PerSecond());        // (10 + 30) / 2
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(15, window.PerSecond());        // (30 + 0) / 2: second 0 has left the window
        time.Advance(TimeSpan.FromSeconds(10));
        window.Add(4);                               // reuses an old slot
        Assert.Equal(0, window.PerSecond());
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(2, window.PerSecond());
    }
}
