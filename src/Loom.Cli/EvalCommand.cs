using Loom.Inference.Engine;
using System.ComponentModel;
using Loom.Core;
using Loom.Data;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Training;
using Loom.Training.Evaluation;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom eval</c>.</summary>
public sealed class EvalCommand : Command<EvalCommand.Settings>
{
    /// <summary>Options of <c>loom eval</c>.</summary>
    public sealed class Settings : CheckpointSettings
    {

        /// <summary>Held-out text.</summary>
        [CommandOption("--data <FILE_OR_DIR>")]
        [Description("Score this text instead of the run's held-out split (all of it is held out).")]
        public string? Data { get; init; }

        /// <summary>Task or mixture to evaluate on.</summary>
        [CommandOption("--task <NAME>")]
        [Description("Evaluate on this task or mixture (see loom data list) instead of the run's data: loss, bits per byte and the task's metrics on greedy predictions, per task.")]
        public string? Task { get; init; }

        /// <summary>Split of --task.</summary>
        [CommandOption("--split <SPLIT>")]
        [Description("Split of --task to evaluate (default validation).")]
        public string Split { get; init; } = "validation";

        /// <summary>Most examples per task.</summary>
        [CommandOption("--examples <N>")]
        [Description("With --task: most examples per task (default: all).")]
        public int? Examples { get; init; }

        /// <summary>Extra task folders.</summary>
        [CommandOption("--task-dir <DIR>")]
        [Description("A folder of task and mixture files to register (repeatable); configs/tasks is read when it exists.")]
        public string[] TaskDirs { get; init; } = [];

        /// <summary>Batches to score.</summary>
        [CommandOption("--batches <N>")]
        [Description("Most batches to score (default: the run's training.eval_batches).")]
        public int? Batches { get; init; }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var config = RunConfigLoader.ReadResolved(Path.Combine(checkpoint, "config.json"));
        var overrides = new List<string>();
        if (settings.Batches is int b) overrides.Add($"training.eval_batches={b}");
        config = config with
        {
            Data = settings.Data is null ? config.Data : config.Data with { Path = settings.Data, Task = null, Mixture = null, UseCache = false },
            Training = settings.Batches is int n ? config.Training with { EvalBatches = n } : config.Training,
            Device = settings.Device ?? config.Device,
        };
        config.Validate();
        var device = Devices.Resolve(config.Device);
        var progress = new Progress<string>(m => Console.Error.WriteLine(m));
        if (settings.Task is { } name)
            return EvaluateTask(checkpoint, config, device, name, settings, progress);
        var data = TrainingDataLoader.Load(config.Data, config.Training, progress, evaluateAll: settings.Data is not null, layout: config.Model.FeatureLayout);
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        using (model)
        {
            if (data.Validation is null)
            {
                var evaluator = new TaskEvaluator(model, data.Vocabulary, device, new EngineSequenceDecoder(data.Vocabulary), new TaskEvaluationOptions { MaxExamples = config.Training.EvalBatches * config.Training.BatchSize });
                Console.WriteLine($"checkpoint {checkpoint} (step {manifest.Step}) on {data.Description}:");
                Console.WriteLine(evaluator.EvaluateTasks(data.CorpusName, data.ValidationTasks, "validation"));
                return 0;
            }
            var result = Evaluator.Evaluate(model, data.Validation, config.Training.EvalBatches, data.ValidationBytesPerToken, device);
            Console.WriteLine(FormattableString.Invariant(
                $"checkpoint {checkpoint} (step {manifest.Step}) on {data.Description}: loss {result.Loss:F4} nats/token, perplexity {result.Perplexity:F3}, {result.BitsPerByte:F4} bits/byte over {result.Tokens} tokens"));
        }
        return 0;
    }

    /// <summary>Scores and predicts a task's or mixture's split with the checkpoint, one line per task.</summary>
    private static int EvaluateTask(string checkpoint, RunConfig config, TorchSharp.torch.Device device, string name, Settings settings, IProgress<string> progress)
    {
        if (settings.Data is not null) throw new ArgumentException("--data and --task both given: evaluate on one of them");
        if (settings.Examples is <= 0) throw new ArgumentException($"--examples = {settings.Examples} must be positive");
        var vocabulary = Vocabularies.Create(config.Data.Vocabulary);
        var registry = TaskRegistry.WithBuiltInsAndFolders(vocabulary, [.. config.Data.TaskDirs, .. settings.TaskDirs], progress: progress);
        IReadOnlyList<DataTask> tasks = registry.HasMixture(name)
            ? [.. registry.TasksOf(name).Select(registry.GetTask)]
            : [TaskRegistry.Find(registry, name, vocabulary)];
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        using (model)
        {
            if (model.FeatureLayout == Loom.Data.FeatureConverters.FeatureLayout.Image)
                return EvaluateImages(checkpoint, manifest.Step, model, tasks, settings, config.Training.BatchSize, device);
            if (model.ImageInput is not null) return EvaluateImageText(checkpoint, manifest.Step, model, vocabulary, tasks, settings);
            // Scored and predicted at the run's sequence length: the rows it trained on, not the model's longest.
            int length = Math.Min(config.Data.SequenceLength, model.ContextLength);
            var evaluator = new TaskEvaluator(model, vocabulary, device, new EngineSequenceDecoder(vocabulary), new TaskEvaluationOptions
            {
                MaxExamples = settings.Examples, SequenceLength = length,
                MaxDecodeLength = Math.Min(new TaskEvaluationOptions().MaxDecodeLength, Math.Max(1, length - 2)),
            });
            Console.WriteLine($"checkpoint {checkpoint} (step {manifest.Step}):");
            var result = evaluator.EvaluateTasks(name, tasks, settings.Split);
            Console.WriteLine(result);
            foreach (var p in result.Tasks.SelectMany(t => t.Predictions.Select(p => (t.Task, p))).Take(5))
                Console.WriteLine($"  {p.Task} #{p.p.Index}: target {Quote(p.p.Target)}, predicted {Quote(p.p.Prediction)}");
        }
        return 0;
    }

    /// <summary>Scores an image classifier on an image task's split: loss and accuracy over its images.</summary>
    private static int EvaluateImages(string checkpoint, long step, LanguageModel model, IReadOnlyList<DataTask> tasks, Settings settings, int batchSize, TorchSharp.torch.Device device)
    {
        if (tasks is not [{ Source: ImageClassificationSource source } task])
            throw new ArgumentException($"{checkpoint} holds an image classifier: evaluate it on one image task, such as --task fashion_mnist");
        var d = source.Dataset;
        var images = settings.Split switch { "train" => d.Train, "validation" => d.Validation, "test" => d.Test, _ => throw new ArgumentException($"--split {settings.Split}: {task.Name} has train, validation and test") };
        var batches = new Loom.Data.Images.ImageBatcher(images, d.Rows, d.Columns, batchSize, seed: 0);
        var result = ImageEvaluator.Evaluate(model, batches, device, settings.Examples);
        Console.WriteLine(FormattableString.Invariant(
            $"checkpoint {checkpoint} (step {step}) on {task.Name} {settings.Split}: accuracy {result.Accuracy:P2} over {result.Images:N0} images, loss {result.Loss:F4} nats/image"));
        return 0;
    }

    /// <summary>
    /// An image + text model on image + text tasks: each kind of prompt's accuracy at naming the image's class, from greedy
    /// continuations decoded through the engine (all examples queued at once, continuous batching).
    /// </summary>
    private static int EvaluateImageText(string checkpoint, long step, LanguageModel model, IVocabulary vocabulary, IReadOnlyList<DataTask> tasks, Settings settings)
    {
        Console.WriteLine($"checkpoint {checkpoint} (step {step}):");
        foreach (var task in tasks)
        {
            var examples = task.GetDataset(settings.Split).Take(settings.Examples ?? int.MaxValue).ToList();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var engine = new ContinuousBatchingEngine(model, vocabulary, "eval", new EngineOptions { MaxRunning = 256, TokenBudget = 2048, MaxQueue = Math.Max(1, examples.Count) });
            var greedy = new Loom.Inference.SamplingOptions { Temperature = 0, MaxTokens = 32 };
            async Task<string> Decode(Example e)
            {
                var text = new System.Text.StringBuilder();
                var request = new GenerationRequest(e.Tokens["inputs"], greedy) { Images = [Loom.Data.ImageText.ImagePrompts.ToUnit(e.Tokens[Loom.Data.ImageText.ImagePrompts.ImageFeature])] };
                await foreach (var update in engine.GenerateAsync(request).ConfigureAwait(false)) text.Append(update.Text);
                return text.ToString();
            }
            var predictions = Task.WhenAll(examples.Select(Decode)).GetAwaiter().GetResult();
            var accuracies = Loom.Training.Evaluation.ImageTextEvaluator.Score(examples, predictions);
            Console.WriteLine(FormattableString.Invariant(
                $"{task.Name} {settings.Split}: {string.Join(", ", accuracies)} over {examples.Count} examples in {clock.Elapsed.TotalSeconds:F0} s (chance: 10%)"));
            foreach (int i in Enumerable.Range(0, Math.Min(4, examples.Count)))
                Console.WriteLine($"  #{i} {examples[i].Text("kind")}: target {Quote(examples[i].Text("targets"))}, predicted {Quote(predictions[i])}");
        }
        return 0;
    }

    private static string Quote(string text) => System.Text.Json.JsonSerializer.Serialize(text.Length > 80 ? text[..80] + "…" : text);
}
