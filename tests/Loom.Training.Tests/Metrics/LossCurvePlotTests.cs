using System.Buffers.Binary;
using Loom.Training.Metrics;
using SkiaSharp;

namespace Loom.Training.Tests.Metrics;

public sealed class LossCurvePlotTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static List<MetricEvent> SampleRun()
    {
        var events = new List<MetricEvent>();
        for (int step = 0; step <= 1000; step += 10)
            events.Add(new MetricEvent(step, MetricEvent.TrainSplit, 2 + 8 * Math.Exp(-step / 200.0) + 0.1 * Math.Sin(step)));
        for (int step = 0; step <= 1000; step += 100)
            events.Add(new MetricEvent(step, MetricEvent.ValidationSplit, 2.2 + 8 * Math.Exp(-step / 200.0)));
        return events;
    }

    private static (int Width, int Height) ReadPngSize(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 33, "file too short to be a PNG");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        // The first chunk must be IHDR: length 13, type, then big-endian width and height.
        Assert.Equal(13u, BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(8, 4)));
        Assert.Equal("IHDR"u8.ToArray(), bytes[12..16]);
        return (BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16, 4)), BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20, 4)));
    }

    private static SKBitmap Decode(string path)
    {
        var bitmap = SKBitmap.Decode(path);
        Assert.True(bitmap is not null, $"{path} does not decode as an image");
        return bitmap!;
    }

    /// <summary>Pixels of exactly a series colour: anti-aliasing blends the edges, but a drawn line has a solid core.</summary>
    private static int PixelsOf(SKBitmap bitmap, ScottPlot.Color color)
    {
        int n = 0;
        foreach (SKColor p in bitmap.Pixels)
            if (p.Red == color.R && p.Green == color.G && p.Blue == color.B) n++;
        return n;
    }

    private static bool SamePixels(string a, string b)
    {
        using SKBitmap x = Decode(a), y = Decode(b);
        return x.Width == y.Width && x.Height == y.Height && x.Pixels.SequenceEqual(y.Pixels);
    }

    private static readonly ScottPlot.Color Train = ScottPlot.Colors.C0, Validation = ScottPlot.Colors.C1;

    [Fact]
    public void Draws_the_train_and_validation_curves()
    {
        string path = _dir.File("loss.png");
        LossCurvePlot.Save(path, SampleRun(), "tiny run");
        using var bitmap = Decode(path);
        Assert.True(PixelsOf(bitmap, Train) > 500, "the train curve is not drawn");
        Assert.True(PixelsOf(bitmap, Validation) > 200, "the validation curve is not drawn");
    }

    [Fact]
    public void Writes_a_png_of_the_requested_size_and_no_temporary_files()
    {
        string path = Path.Combine(_dir.Path, "plots", "loss.png");

        LossCurvePlot.Save(path, SampleRun(), "tiny run");

        Assert.Equal((LossCurvePlot.DefaultWidth, LossCurvePlot.DefaultHeight), ReadPngSize(path));
        Assert.Equal([path], Directory.GetFiles(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public void Honours_custom_dimensions_and_replaces_an_existing_file()
    {
        string path = _dir.File("loss.png");
        File.WriteAllText(path, "not a png");

        LossCurvePlot.Save(path, SampleRun(), "resized", width: 640, height: 360);

        Assert.Equal((640, 360), ReadPngSize(path));
    }

    [Fact]
    public void Plots_train_only_before_the_first_evaluation()
    {
        string path = _dir.File("loss.png");
        LossCurvePlot.Save(path, SampleRun().Where(e => e.Split == MetricEvent.TrainSplit).ToList(), "train only");
        Assert.Equal((LossCurvePlot.DefaultWidth, LossCurvePlot.DefaultHeight), ReadPngSize(path));
        using var bitmap = Decode(path);
        Assert.True(PixelsOf(bitmap, Train) > 500, "the train curve is not drawn");
        Assert.Equal(0, PixelsOf(bitmap, Validation)); // no validation series, not even in the legend
    }

    [Fact]
    public void Copes_with_resumed_runs_and_non_finite_losses()
    {
        List<MetricEvent> events = SampleRun();
        // A resumed run re-logs steps 500..600, and one step diverged.
        events.AddRange(Enumerable.Range(50, 11).Select(i => new MetricEvent(i * 10, MetricEvent.TrainSplit, 2.5)));
        events.Add(new MetricEvent(1010, MetricEvent.TrainSplit, double.NaN));
        string path = _dir.File("loss.png");

        LossCurvePlot.Save(path, events, "resumed");

        Assert.Equal((LossCurvePlot.DefaultWidth, LossCurvePlot.DefaultHeight), ReadPngSize(path));
        // What the plot promises: one point per step, the resumed run's value winning, the diverged step left
        // out (and not stretching the axis). So it must be the very image of that clean series.
        List<MetricEvent> clean = SampleRun()
            .Where(e => !(e.Split == MetricEvent.TrainSplit && e.Step is >= 500 and <= 600))
            .Concat(Enumerable.Range(50, 11).Select(i => new MetricEvent(i * 10, MetricEvent.TrainSplit, 2.5)))
            .ToList();
        string expected = _dir.File("clean.png");
        LossCurvePlot.Save(expected, clean, "resumed");
        Assert.True(SamePixels(path, expected), "the resumed run is not drawn as one line through the last value of each step");
        // And the re-logged values did change the curve (the comparison can tell plots apart).
        string original = _dir.File("original.png");
        LossCurvePlot.Save(original, SampleRun(), "resumed");
        Assert.False(SamePixels(path, original), "the resumed run's values were not drawn");
        using var bitmap = Decode(path);
        Assert.True(PixelsOf(bitmap, Train) > 500, "the train curve is not drawn");
    }

    [Fact]
    public void Throws_for_an_empty_list_and_writes_nothing()
    {
        string path = _dir.File("loss.png");
        var ex = Assert.Throws<ArgumentException>(() => LossCurvePlot.Save(path, [], "empty"));
        Assert.Equal("events", ex.ParamName);
        Assert.Empty(Directory.GetFileSystemEntries(_dir.Path));
    }

    [Fact]
    public void Throws_when_no_loss_is_finite()
    {
        MetricEvent[] events = [new(1, MetricEvent.TrainSplit, double.NaN), new(1, MetricEvent.ValidationSplit, double.PositiveInfinity)];
        Assert.Throws<ArgumentException>(() => LossCurvePlot.Save(_dir.File("loss.png"), events, "diverged"));
        Assert.False(File.Exists(_dir.File("loss.png")));
    }

    [Fact]
    public void Plots_what_JsonlMetricSink_logged()
    {
        string log = _dir.File("metrics.jsonl");
        using (var sink = new JsonlMetricSink(log, append: false))
            foreach (MetricEvent e in SampleRun())
                sink.Write(e);
        string path = _dir.File("loss.png");

        LossCurvePlot.Save(path, JsonlMetricSink.ReadAll(log), "from jsonl");

        Assert.Equal((LossCurvePlot.DefaultWidth, LossCurvePlot.DefaultHeight), ReadPngSize(path));
    }
}
