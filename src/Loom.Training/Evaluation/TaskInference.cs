using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Data;
using Loom.Data.Tasks;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training.Evaluation;

/// <summary>One example's inference result (a line of <c>loom infer</c>'s output).</summary>
/// <param name="Index">The example's position in the split (0 = first).</param>
/// <param name="Inputs">The inputs text (the "inputs" text feature, else the decoded input tokens; empty for a task without inputs).</param>
/// <param name="Targets">The decoded targets, through the task's postprocessor (as the metrics see them).</param>
/// <param name="Prediction">The greedy prediction, decoded and postprocessed; null for a task without inputs (nothing to predict from).</param>
/// <param name="Score">log P(targets | inputs) in nats, summed over the (fitted) target tokens; 0 when the example has no targets.</param>
/// <param name="StoppedAtEos">True where the prediction ended with EOS; false where it ran out of decode length or was not made.</param>
public sealed record ExampleInference(int Index, string Inputs, string Targets, string? Prediction, double Score, bool StoppedAtEos)
{
    /// <summary>The result as a JSON object: <c>index</c>, <c>inputs</c>, <c>targets</c>, <c>prediction</c>, <c>score</c>.</summary>
    /// <returns>A new object; a non-finite score is written as a string, as in the evaluation results.</returns>
    public JsonObject ToJsonObject() => new()
    {
        ["index"] = Index, ["inputs"] = Inputs, ["targets"] = Targets, ["prediction"] = Prediction, ["score"] = EvaluationFormat.Number(Score),
    };
}

/// <summary>
/// t5x's <c>infer</c> over a task's split: every example's greedy prediction and the log-likelihood of its
/// targets given its inputs, one result per example (where <see cref="TaskEvaluator"/> aggregates them into
/// a loss and metrics). It runs the evaluator's own code paths: the same example reading and checks, the
/// same fitting to the sequence length, the same prompts and decoder, the same postprocessor.
/// </summary>
/// <remarks>
/// Scores are <see cref="LanguageModel.Score"/> of each example alone: the examples are not packed, each
/// becomes one row of the model family's feature converter (<c>PrefixLmFeatureConverter</c> rows with loss
/// weight on the targets only for a decoder-only model, <c>EncoderDecoderFeatureConverter</c> rows for an
/// encoder-decoder), batched <see cref="TaskEvaluationOptions.BatchSize"/> rows at a time. Predictions are
/// made for tasks with an "inputs" feature (whatever their metrics), decoded by the injected
/// <see cref="ISequenceDecoder"/> (greedy).
/// </remarks>
public sealed class TaskInference
{
    private readonly TaskEvaluator evaluator;

    /// <summary>Creates an inference runner; the arguments are those of <see cref="TaskEvaluator"/>, and checked alike.</summary>
    /// <param name="model">The model; it must live on <paramref name="device"/>.</param>
    /// <param name="vocabulary">The vocabulary the model and the tasks use.</param>
    /// <param name="device">Where the model lives.</param>
    /// <param name="decoder">Decodes the predictions (an inference engine, or the <see cref="ReferenceDecoder"/>).</param>
    /// <param name="options">Examples, batch size, decode length, sequence length, postprocessors and seed; null = the defaults.</param>
    /// <exception cref="ArgumentException">See <see cref="TaskEvaluator"/>'s constructor.</exception>
    public TaskInference(LanguageModel model, IVocabulary vocabulary, Device device, ISequenceDecoder decoder, TaskEvaluationOptions? options = null)
    {
        evaluator = new TaskEvaluator(model, vocabulary, device, decoder, (options ?? new TaskEvaluationOptions()) with { Predict = true });
    }

    /// <summary>The settings in effect.</summary>
    public TaskEvaluationOptions Options => evaluator.Options;

    /// <summary>Predicts and scores every example of <paramref name="split"/> of <paramref name="task"/> (up to <see cref="TaskEvaluationOptions.MaxExamples"/>).</summary>
    /// <param name="task">A task whose examples carry token features, tokenized with the model's vocabulary.</param>
    /// <param name="split">The split, e.g. <c>validation</c>.</param>
    /// <returns>One result per example, in the split's order.</returns>
    /// <exception cref="ArgumentException">The task has no such split, no "targets" feature, or another vocabulary.</exception>
    /// <exception cref="InvalidOperationException">An example lacks a token feature.</exception>
    public IReadOnlyList<ExampleInference> Infer(DataTask task, string split)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(split);
        bool hasInputs = evaluator.CheckTask(task, split);
        var examples = evaluator.ReadExamples(task, split, hasInputs);
        return evaluator.InEvalMode(() =>
        {
            double[] scores = Scores(examples, hasInputs);
            if (!hasInputs)
            {
                var postprocessor = Options.PostprocessorFor(task.Name);
                return (IReadOnlyList<ExampleInference>)[.. examples.Select((e, i) => new ExampleInference(
                    i, "", postprocessor.Apply(evaluator.Vocabulary.Decode(e.Tokens[TaskEvaluator.TargetsFeature])), null, scores[i], false))];
            }
            var predictions = examples.Count == 0 ? [] : evaluator.PredictAll(task, examples, withInputs: examples.Count);
            return [.. predictions.Select(p => new ExampleInference(p.Index, p.Inputs, p.Target, p.Prediction, scores[p.Index], p.StoppedAtEos))];
        });
    }

    /// <summary>
    /// Runs <see cref="Infer"/> and writes one JSON object per example, one per line, to
    /// <paramref name="outputPath"/>. The file is written under a temporary name beside it and renamed
    /// when complete, so an interrupted run leaves no partial file (and an existing file untouched).
    /// </summary>
    /// <param name="task">The task.</param>
    /// <param name="split">The split.</param>
    /// <param name="outputPath">The JSON Lines file to (over)write; its folder must exist and be writable.</param>
    /// <returns>The number of lines written.</returns>
    /// <exception cref="IOException">The output cannot be written (checked before any example is read).</exception>
    /// <exception cref="ArgumentException">See <see cref="Infer"/>.</exception>
    public int WriteJsonLines(DataTask task, string split, string outputPath)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputPath);
        string full = Path.GetFullPath(outputPath);
        if (Directory.Exists(full)) throw new IOException($"cannot write {outputPath}: it is a folder; pass a file path such as {Path.Combine(outputPath, "predictions.jsonl")}");
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}");
        FileStream stream;
        try
        {
            stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None); // fails fast, before the model runs
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {outputPath}: {e.Message.Split('\n')[0]} (pass a path in an existing, writable folder)", e);
        }
        try
        {
            int lines = 0;
            using (stream)
            using (var writer = new StreamWriter(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false)))
            {
                foreach (var result in Infer(task, split))
                {
                    writer.Write(result.ToJsonObject().ToJsonString(LineOptions));
                    writer.Write('\n');
                    lines++;
                }
            }
            File.Move(temp, full, overwrite: true);
            return lines;
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    // Readable lines: "<", ">", "&", "+" and non-ASCII text are written as they are (the output is a file, not HTML).
    private static readonly JsonSerializerOptions LineOptions = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Each example's score alone: one unpacked row per example, batched; 0 for an example without targets.</summary>
    private double[] Scores(List<Example> examples, bool hasInputs)
    {
        var scores = new double[examples.Count];
        var sequences = new List<(int[] Inputs, int[] Targets)>();
        var owners = new List<int>(); // the example each sequence belongs to
        int room = evaluator.TargetsRoom(examples, hasInputs);
        for (int i = 0; i < examples.Count; i++)
        {
            if (evaluator.Fit(examples[i], hasInputs, room) is not { } fitted) continue;
            sequences.Add((fitted.Inputs, fitted.Targets));
            owners.Add(i);
        }
        if (sequences.Count == 0) return scores;
        int row = 0;
        evaluator.ScoreRows(sequences, pack: false, rowScores =>
        {
            foreach (double score in rowScores.to(float64).cpu().data<double>().ToArray()) scores[owners[row++]] = score;
        });
        return scores;
    }
}
