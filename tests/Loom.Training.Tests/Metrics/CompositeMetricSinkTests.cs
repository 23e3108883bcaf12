using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class CompositeMetricSinkTests
{
    private sealed class RecordingSink(string name, List<string> log, bool fail = false) : IMetricSink
    {
        public List<MetricEvent> Events { get; } = [];

        public void Write(MetricEvent e)
        {
            log.Add($"{name}.write");
            if (fail)
                throw new IOException($"{name} failed");
            Events.Add(e);
        }

        public void Flush()
        {
            log.Add($"{name}.flush");
            if (fail)
                throw new IOException($"{name} failed");
        }

        public void Dispose()
        {
            log.Add($"{name}.dispose");
            if (fail)
                throw new IOException($"{name} failed");
        }
    }

    [Fact]
    public void Forwards_every_call_to_every_sink_in_order()
    {
        var log = new List<string>();
        var a = new RecordingSink("a", log);
        var b = new RecordingSink("b", log);
        var e = new MetricEvent(1, MetricEvent.TrainSplit, 2);

        using (var composite = new CompositeMetricSink(a, b))
        {
            composite.Write(e);
            composite.Flush();
        }

        Assert.Equal(["a.write", "b.write", "a.flush", "b.flush", "a.dispose", "b.dispose"], log);
        Assert.Equal([e], a.Events);
        Assert.Equal([e], b.Events);
    }

    [Fact]
    public void A_failing_sink_does_not_stop_the_others()
    {
        var log = new List<string>();
        var bad = new RecordingSink("bad", log, fail: true);
        var good = new RecordingSink("good", log);
        var composite = new CompositeMetricSink(bad, good);
        var e = new MetricEvent(1, MetricEvent.TrainSplit, 2);

        var write = Assert.Throws<AggregateException>(() => composite.Write(e));
        Assert.IsType<IOException>(Assert.Single(write.InnerExceptions));
        Assert.Equal([e], good.Events);

        var dispose = Assert.Throws<AggregateException>(composite.Dispose);
        Assert.Single(dispose.InnerExceptions);
        Assert.Contains("good.dispose", log);

        // Disposal happened once, even though it reported a failure.
        composite.Dispose();
        Assert.Equal(1, log.Count(l => l == "good.dispose"));
        Assert.Throws<ObjectDisposedException>(() => composite.Write(e));
    }

    [Fact]
    public void Works_end_to_end_with_the_file_sinks()
    {
        using var dir = new TempDirectory();
        string jsonl = dir.File("metrics.jsonl");
        using (var composite = new CompositeMetricSink(new JsonlMetricSink(jsonl, append: false), new TensorBoardMetricSink(dir.File("tb"))))
            composite.Write(new MetricEvent(3, MetricEvent.TrainSplit, 1.5));

        Assert.Equal([new MetricEvent(3, MetricEvent.TrainSplit, 1.5)], JsonlMetricSink.ReadAll(jsonl));
        Assert.Single(Directory.GetFiles(dir.File("tb"), "events.out.tfevents.*"));
    }

    [Fact]
    public void Rejects_null_sinks()
    {
        Assert.Throws<ArgumentNullException>(() => new CompositeMetricSink(null!));
        Assert.Throws<ArgumentNullException>(() => new CompositeMetricSink(new RecordingSink("a", []), null!));
    }
}
