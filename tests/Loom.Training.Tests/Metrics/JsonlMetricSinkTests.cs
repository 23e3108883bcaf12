using System.Text;
using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class JsonlMetricSinkTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static MetricEvent Train(long step, double loss) => new(step, MetricEvent.TrainSplit, loss);

    [Fact]
    public void Each_event_is_in_the_file_as_soon_as_Write_returns()
    {
        string path = _dir.File("m.jsonl");
        using var sink = new JsonlMetricSink(path, append: false);

        sink.Write(Train(1, 4.0));
        // Read while the sink is still open and never flushed or disposed: this is what a crash would leave.
        Assert.Equal([Train(1, 4.0)], JsonlMetricSink.ReadAll(path));

        sink.Write(Train(2, 3.5));
        Assert.Equal([Train(1, 4.0), Train(2, 3.5)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void Writes_one_compact_object_per_line()
    {
        string path = _dir.File("m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: false))
        {
            sink.Write(Train(1, 4.0));
            sink.Write(Train(2, 3.5));
        }

        Assert.Equal("{\"step\":1,\"split\":\"train\",\"loss\":4}\n{\"step\":2,\"split\":\"train\",\"loss\":3.5}\n",
            File.ReadAllText(path));
    }

    [Fact]
    public void Append_keeps_earlier_events_and_overwrite_discards_them()
    {
        string path = _dir.File("m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: false))
            sink.Write(Train(1, 4.0));
        using (var sink = new JsonlMetricSink(path, append: true))
            sink.Write(Train(2, 3.0));

        Assert.Equal([Train(1, 4.0), Train(2, 3.0)], JsonlMetricSink.ReadAll(path));

        using (var sink = new JsonlMetricSink(path, append: false))
            sink.Write(Train(9, 1.0));

        Assert.Equal([Train(9, 1.0)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void Append_cuts_off_a_torn_last_line_before_writing()
    {
        string path = _dir.File("m.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"split\":\"train\",\"loss\":4}\n{\"step\":2,\"spl");

        using (var sink = new JsonlMetricSink(path, append: true))
            sink.Write(Train(3, 2.0));

        Assert.Equal("{\"step\":1,\"split\":\"train\",\"loss\":4}\n{\"step\":3,\"split\":\"train\",\"loss\":2}\n",
            File.ReadAllText(path));
    }

    [Fact]
    public void Append_to_a_file_that_is_only_a_torn_line_starts_it_afresh()
    {
        string path = _dir.File("m.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"sp");

        using (var sink = new JsonlMetricSink(path, append: true))
            sink.Write(Train(2, 2.0));

        Assert.Equal([Train(2, 2.0)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void Append_finds_the_last_newline_beyond_the_scan_block()
    {
        // The torn tail is longer than the 4 KiB block the sink scans backwards with.
        string path = _dir.File("m.jsonl");
        string good = "{\"step\":1,\"split\":\"train\",\"loss\":4}\n";
        File.WriteAllText(path, good + "{\"step\":2,\"split\":\"" + new string('x', 10_000));

        using (var sink = new JsonlMetricSink(path, append: true))
            sink.Write(Train(3, 2.0));

        Assert.Equal([Train(1, 4.0), Train(3, 2.0)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void Append_creates_a_missing_file_and_its_directory()
    {
        string path = Path.Combine(_dir.Path, "run", "nested", "m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: true))
            sink.Write(Train(1, 4.0));

        Assert.Equal([Train(1, 4.0)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void ReadAll_skips_blank_lines_and_an_unparsable_unterminated_last_line()
    {
        string path = _dir.File("m.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"split\":\"train\",\"loss\":4}\r\n\n{\"step\":2,\"split\":\"validation\",\"loss\":3}\n{\"step\":3,\"spl");

        Assert.Equal([Train(1, 4.0), new MetricEvent(2, MetricEvent.ValidationSplit, 3.0)], JsonlMetricSink.ReadAll(path));
    }

    [Fact]
    public void ReadAll_keeps_a_complete_last_line_without_newline()
    {
        string path = _dir.File("m.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"split\":\"train\",\"loss\":4}");

        Assert.Equal([Train(1, 4.0)], JsonlMetricSink.ReadAll(path));
    }

    [Theory]
    [InlineData("{\"step\":2,\"split\":\"train\"")]
    [InlineData("{\"step\":2,\"split\":\"test\",\"loss\":1}")]
    [InlineData("null")]
    public void ReadAll_reports_the_file_and_line_of_a_bad_complete_line(string bad)
    {
        string path = _dir.File("m.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"split\":\"train\",\"loss\":4}\n" + bad + "\n{\"step\":3,\"split\":\"train\",\"loss\":1}\n",
            new UTF8Encoding(false));

        var ex = Assert.Throws<InvalidDataException>(() => JsonlMetricSink.ReadAll(path));
        Assert.Contains(path + ":2:", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Flush_and_Write_after_Dispose_throw_and_Dispose_twice_is_harmless()
    {
        var sink = new JsonlMetricSink(_dir.File("m.jsonl"), append: false);
        sink.Flush();
        sink.Dispose();
        sink.Dispose();

        Assert.Throws<ObjectDisposedException>(() => sink.Write(Train(1, 1)));
        Assert.Throws<ObjectDisposedException>(() => sink.Flush());
    }

    [Fact]
    public void Concurrent_writers_on_one_sink_never_interleave_lines()
    {
        string path = _dir.File("m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: false))
            Parallel.For(0, 400, i => sink.Write(Train(i, i + 0.5)));

        IReadOnlyList<MetricEvent> read = JsonlMetricSink.ReadAll(path);
        Assert.Equal(Enumerable.Range(0, 400).Select(i => (long)i), read.Select(e => e.Step).Order());
        Assert.All(read, e => Assert.Equal(e.Step + 0.5, e.Loss));
    }
}
