using System.Text.Json;
using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class MetricEventTests
{
    [Fact]
    public void Serialises_with_snake_case_names_and_omits_nulls()
    {
        using var dir = new TempDirectory();
        string path = dir.File("m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: false))
        {
            sink.Write(new MetricEvent(7, MetricEvent.TrainSplit, 2.5)
            {
                LearningRate = 0.001,
                GradNorm = 1.25,
                TokensPerSecond = 1000,
                Mfu = 0.5,
                ZLoss = 0.0625,
                ElapsedSeconds = 12.5,
            });
            sink.Write(new MetricEvent(8, MetricEvent.ValidationSplit, 3) { Perplexity = 20, BitsPerByte = 1.5 });
        }

        string[] lines = File.ReadAllLines(path);
        Assert.Equal(2, lines.Length);

        using JsonDocument train = JsonDocument.Parse(lines[0]);
        string[] trainNames = train.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "elapsed_s", "grad_norm", "loss", "lr", "mfu", "split", "step", "tokens_per_s", "z_loss" }, trainNames);
        Assert.Equal(7, train.RootElement.GetProperty("step").GetInt64());
        Assert.Equal("train", train.RootElement.GetProperty("split").GetString());
        Assert.Equal(2.5, train.RootElement.GetProperty("loss").GetDouble());
        Assert.Equal(0.001, train.RootElement.GetProperty("lr").GetDouble());
        Assert.Equal(1.25, train.RootElement.GetProperty("grad_norm").GetDouble());
        Assert.Equal(1000, train.RootElement.GetProperty("tokens_per_s").GetDouble());
        Assert.Equal(0.5, train.RootElement.GetProperty("mfu").GetDouble());
        Assert.Equal(0.0625, train.RootElement.GetProperty("z_loss").GetDouble());
        Assert.Equal(12.5, train.RootElement.GetProperty("elapsed_s").GetDouble());

        using JsonDocument validation = JsonDocument.Parse(lines[1]);
        string[] validationNames = validation.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "bits_per_byte", "loss", "perplexity", "split", "step" }, validationNames);
        Assert.Equal(20, validation.RootElement.GetProperty("perplexity").GetDouble());
        Assert.Equal(1.5, validation.RootElement.GetProperty("bits_per_byte").GetDouble());
    }

    [Fact]
    public void Round_trips_every_field_including_non_finite_losses()
    {
        var events = new[]
        {
            new MetricEvent(1, MetricEvent.TrainSplit, 10.25)
            {
                LearningRate = 3e-4, GradNorm = 0.75, TokensPerSecond = 12345.5, Mfu = 0.375,
                Perplexity = 28000, BitsPerByte = 4.125, ZLoss = 1e-4, ElapsedSeconds = 0.5,
            },
            new MetricEvent(2, MetricEvent.TrainSplit, double.NaN) { GradNorm = double.PositiveInfinity },
            new MetricEvent(long.MaxValue, MetricEvent.ValidationSplit, double.NegativeInfinity),
        };
        using var dir = new TempDirectory();
        string path = dir.File("m.jsonl");
        using (var sink = new JsonlMetricSink(path, append: false))
            foreach (MetricEvent e in events)
                sink.Write(e);

        IReadOnlyList<MetricEvent> read = JsonlMetricSink.ReadAll(path);

        // Record equality compares every member; NaN equals NaN under double.Equals.
        Assert.Equal(events, read);
    }

    [Theory]
    [InlineData("valid")]
    [InlineData("Train")]
    [InlineData("")]
    public void Rejects_unknown_split_names(string split)
    {
        Assert.Throws<ArgumentException>(() => new MetricEvent(0, split, 1));
        var ok = new MetricEvent(0, MetricEvent.TrainSplit, 1);
        Assert.Throws<ArgumentException>(() => ok with { Split = split });
    }

    [Fact]
    public void With_keeps_a_valid_split_change()
    {
        var e = new MetricEvent(3, MetricEvent.TrainSplit, 1) with { Split = MetricEvent.ValidationSplit };
        Assert.Equal("validation", e.Split);
    }
}
