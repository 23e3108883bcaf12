using System.Text.Json.Nodes;
using Loom.Data.Evaluation;
using Loom.Training.Evaluation;

namespace Loom.Training.Tests.Evaluation;

public class TaskEvaluationResultTests
{
    private static TaskEvaluationResult Spam(double nats) => new("spam_assassin", "validation", 200,
        new ScoreResult(nats, 1000, 1200, 0), [new MetricResult("accuracy", 84), new MetricResult("exact_match", 84)],
        [new ExamplePrediction(0, "Buy now!", "spam", "spam", true)]);

    [Fact]
    public void PrintsOneLogLine()
    {
        var result = Spam(2310);
        Assert.Equal(
            $"spam_assassin/validation: loss 2.310 nats/token, ppl {Math.Exp(2.31):F2}, {2310 / 1200.0 / Math.Log(2):F3} bits/byte, accuracy 84.00, exact_match 84.00 (200 examples)",
            result.ToString());
        var predictedOnly = result with { Score = new ScoreResult(0, 0, 0, 3), ExampleCount = 1 };
        Assert.Equal("spam_assassin/validation: accuracy 84.00, exact_match 84.00 (1 example, 3 truncated)", predictedOnly.ToString());
    }

    [Fact]
    public void WritesAJsonObjectThatParsesBack()
    {
        var json = JsonNode.Parse(Spam(2310).ToJsonObject(includePredictions: true).ToJsonString())!.AsObject();
        Assert.Equal("spam_assassin", (string?)json["task"]);
        Assert.Equal("validation", (string?)json["split"]);
        Assert.Equal(200, (int)json["examples"]!);
        Assert.Equal(2.31, (double)json["loss"]!, 12);
        Assert.Equal(1000, (long)json["tokens"]!);
        Assert.Equal(1200, (long)json["bytes"]!);
        Assert.Equal(84, (double)json["metrics"]!["accuracy"]!);
        Assert.Equal("spam", (string?)json["predictions"]![0]!["prediction"]);
        Assert.True((bool)json["predictions"]![0]!["stopped_at_eos"]!);
        Assert.Null(Spam(2310).ToJsonObject()["predictions"]);
    }

    [Fact]
    public void NonFiniteLossesAreWrittenAsNamedLiterals()
    {
        var json = Spam(double.PositiveInfinity).ToJsonObject();
        Assert.Equal("Infinity", (string?)json["loss"]);
        var empty = new ScoreResult(0, 0, 0, 0);
        Assert.True(double.IsNaN(empty.Loss));
        Assert.Equal("NaN", (string?)(Spam(0) with { Score = empty }).ToJsonObject()["bits_per_byte"]);
    }

    [Fact]
    public void ScoresAddAsSums()
    {
        var sum = new ScoreResult(10, 4, 5, 1).Add(new ScoreResult(2, 2, 3, 0));
        Assert.Equal(new ScoreResult(12, 6, 8, 1), sum);
        Assert.Equal(2, sum.Loss, 12);
        Assert.Equal(12 / 8.0 / Math.Log(2), sum.BitsPerByte, 12);
    }
}
