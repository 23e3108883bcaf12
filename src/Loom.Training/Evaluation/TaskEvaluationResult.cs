using System.Globalization;
using System.Text.Json.Nodes;
using Loom.Data.Evaluation;

namespace Loom.Training.Evaluation;

/// <summary>
/// The likelihood of a split's targets: summed negative log-likelihood and what it was summed over,
/// from which loss, perplexity and bits per byte follow. Sums, not means, so that results of several
/// tasks combine by adding (see <see cref="Add"/>).
/// </summary>
/// <param name="TotalNats">Summed negative log-likelihood of the scored target tokens, in nats.</param>
/// <param name="TokenCount">Target tokens scored (EOS included where the task appends it).</param>
/// <param name="ByteCount">UTF-8 bytes of the scored targets' text.</param>
/// <param name="TruncatedExamples">Examples that did not fit the sequence length and lost tokens.</param>
public sealed record ScoreResult(double TotalNats, long TokenCount, long ByteCount, int TruncatedExamples)
{
    /// <summary>Mean cross-entropy per target token, in nats; NaN when no token was scored.</summary>
    public double Loss => TokenCount > 0 && IsValid(TotalNats) ? LanguageModelMetrics.NatsPerToken(TotalNats, TokenCount)
        : TokenCount > 0 ? TotalNats / TokenCount : double.NaN;

    /// <summary><c>exp(Loss)</c>; NaN when no token was scored.</summary>
    public double Perplexity => Math.Exp(Loss);

    /// <summary>Bits per UTF-8 byte of target text, comparable across vocabularies; NaN when there are no bytes.</summary>
    public double BitsPerByte => ByteCount > 0 && IsValid(TotalNats) ? LanguageModelMetrics.BitsPerByte(TotalNats, ByteCount)
        : ByteCount > 0 ? TotalNats / (ByteCount * Math.Log(2)) : double.NaN;

    /// <summary>The combined score of two disjoint sets of examples (sums of everything).</summary>
    /// <param name="other">The other score.</param>
    /// <returns>The sum.</returns>
    public ScoreResult Add(ScoreResult other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new(TotalNats + other.TotalNats, TokenCount + other.TokenCount, ByteCount + other.ByteCount, TruncatedExamples + other.TruncatedExamples);
    }

    // LanguageModelMetrics refuses a non-finite sum; a diverged model's NaN or infinite loss is still reported, not thrown.
    private static bool IsValid(double nats) => nats >= 0 && double.IsFinite(nats);
}

/// <summary>One example's prediction, as logged.</summary>
/// <param name="Index">The example's position in the split (0 = first).</param>
/// <param name="Inputs">The example's inputs text (its "inputs" text feature, else the decoded input tokens).</param>
/// <param name="Target">The decoded, postprocessed target that the metrics compared with.</param>
/// <param name="Prediction">The decoded, postprocessed greedy prediction.</param>
/// <param name="StoppedAtEos">True where the model emitted EOS; false where it ran out of decode length.</param>
public sealed record ExamplePrediction(int Index, string Inputs, string Target, string Prediction, bool StoppedAtEos);

/// <summary>
/// The evaluation of one task's split: the targets' likelihood (every task) and, for tasks that were
/// predicted, the task's metrics (on the scale each metric documents: percentages for Loom's text metrics).
/// </summary>
/// <param name="Task">The task's name.</param>
/// <param name="Split">The split evaluated.</param>
/// <param name="ExampleCount">Examples evaluated.</param>
/// <param name="Score">The targets' likelihood.</param>
/// <param name="Metrics">The task's metrics over all predictions, in the task's order; empty when the task was not predicted.</param>
/// <param name="Predictions">The first predictions (up to <see cref="TaskEvaluationOptions.PredictionsToKeep"/>), for logging.</param>
public sealed record TaskEvaluationResult(
    string Task, string Split, int ExampleCount, ScoreResult Score, IReadOnlyList<MetricResult> Metrics, IReadOnlyList<ExamplePrediction> Predictions)
{
    /// <summary>
    /// One log line, e.g. <c>spam_assassin/validation: loss 2.310 nats/token, ppl 10.07, 1.920 bits/byte,
    /// accuracy 84.00, exact_match 84.00 (200 examples)</c>.
    /// </summary>
    public override string ToString() => EvaluationFormat.Line($"{Task}/{Split}", Score, Metrics, ExampleCount);

    /// <summary>
    /// The result as a JSON object with snake_case keys: <c>task</c>, <c>split</c>, <c>examples</c>,
    /// <c>loss</c>, <c>perplexity</c>, <c>bits_per_byte</c>, <c>tokens</c>, <c>bytes</c>,
    /// <c>truncated_examples</c>, <c>metrics</c> (name to value) and, if asked, <c>predictions</c>.
    /// Non-finite numbers are written as the strings "NaN", "Infinity" and "-Infinity", as in the
    /// trainer's metrics log. Callers may add members (e.g. the step) before writing it out.
    /// </summary>
    /// <param name="includePredictions">Whether to add the kept predictions.</param>
    /// <returns>A new object.</returns>
    public JsonObject ToJsonObject(bool includePredictions = false)
    {
        var json = new JsonObject { ["task"] = Task, ["split"] = Split, ["examples"] = ExampleCount };
        EvaluationFormat.AddScore(json, Score, Metrics);
        if (includePredictions)
            json["predictions"] = new JsonArray([.. Predictions.Select(p => (JsonNode)new JsonObject
            {
                ["index"] = p.Index, ["inputs"] = p.Inputs, ["target"] = p.Target, ["prediction"] = p.Prediction, ["stopped_at_eos"] = p.StoppedAtEos,
            })]);
        return json;
    }
}

/// <summary>The evaluation of several tasks (a mixture's, or any list) on one split, with a combined line.</summary>
/// <param name="Name">The mixture's name, or a label for the list.</param>
/// <param name="Split">The split evaluated.</param>
/// <param name="Tasks">One result per task, in evaluation order.</param>
public sealed record MixtureEvaluationResult(string Name, string Split, IReadOnlyList<TaskEvaluationResult> Tasks)
{
    /// <summary>All tasks' scores summed: the loss is token-weighted over every task's targets.</summary>
    public ScoreResult Score => Tasks.Select(t => t.Score).Aggregate(new ScoreResult(0, 0, 0, 0), (a, b) => a.Add(b));

    /// <summary>Examples evaluated across all tasks.</summary>
    public int ExampleCount => Tasks.Sum(t => t.ExampleCount);

    /// <summary>For each metric name some task reports (in order of first appearance), its unweighted mean over the tasks that report it.</summary>
    public IReadOnlyList<MetricResult> MeanMetrics =>
        [.. Tasks.SelectMany(t => t.Metrics).GroupBy(m => m.Name, StringComparer.Ordinal).Select(g => new MetricResult(g.Key, g.Average(m => m.Value)))];

    /// <summary>The combined log line, e.g. <c>glue/validation (3 tasks): loss 2.310 nats/token, ..., accuracy 80.00 (600 examples)</c>.</summary>
    public string CombinedLine => EvaluationFormat.Line($"{Name}/{Split} ({Tasks.Count} task{(Tasks.Count == 1 ? "" : "s")})", Score, MeanMetrics, ExampleCount);

    /// <summary>One line per task, then <see cref="CombinedLine"/>.</summary>
    public override string ToString() => string.Join('\n', [.. Tasks.Select(t => t.ToString()), CombinedLine]);

    /// <summary>
    /// The result as a JSON object: <c>mixture</c>, <c>split</c>, <c>examples</c>, the combined score
    /// members and mean <c>metrics</c> (as <see cref="TaskEvaluationResult.ToJsonObject"/>), and
    /// <c>tasks</c>, an array of the tasks' objects.
    /// </summary>
    /// <param name="includePredictions">Whether each task's object carries its kept predictions.</param>
    /// <returns>A new object.</returns>
    public JsonObject ToJsonObject(bool includePredictions = false)
    {
        var json = new JsonObject { ["mixture"] = Name, ["split"] = Split, ["examples"] = ExampleCount };
        EvaluationFormat.AddScore(json, Score, MeanMetrics);
        json["tasks"] = new JsonArray([.. Tasks.Select(t => (JsonNode)t.ToJsonObject(includePredictions))]);
        return json;
    }
}

/// <summary>The log-line and JSON layout shared by task and mixture results.</summary>
internal static class EvaluationFormat
{
    public static string Line(string label, ScoreResult score, IReadOnlyList<MetricResult> metrics, int examples)
    {
        var parts = new List<string>();
        if (score.TokenCount > 0)
        {
            parts.Add(Invariant($"loss {score.Loss:F3} nats/token"));
            parts.Add(Invariant($"ppl {score.Perplexity:F2}"));
            if (score.ByteCount > 0) parts.Add(Invariant($"{score.BitsPerByte:F3} bits/byte"));
        }
        parts.AddRange(metrics.Select(m => Invariant($"{m.Name} {m.Value:F2}")));
        string truncated = score.TruncatedExamples > 0 ? Invariant($", {score.TruncatedExamples} truncated") : "";
        return Invariant($"{label}: {string.Join(", ", parts)} ({examples} example{(examples == 1 ? "" : "s")}{truncated})");
    }

    public static void AddScore(JsonObject json, ScoreResult score, IReadOnlyList<MetricResult> metrics)
    {
        json["loss"] = Number(score.Loss);
        json["perplexity"] = Number(score.Perplexity);
        json["bits_per_byte"] = Number(score.BitsPerByte);
        json["tokens"] = score.TokenCount;
        json["bytes"] = score.ByteCount;
        json["truncated_examples"] = score.TruncatedExamples;
        var values = new JsonObject();
        foreach (var m in metrics) values[m.Name] = Number(m.Value);
        json["metrics"] = values;
    }

    // System.Text.Json refuses to write NaN or infinity as numbers; strings keep the information.
    internal static JsonNode Number(double value) => double.IsFinite(value)
        ? JsonValue.Create(value)
        : JsonValue.Create(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
