using System.ComponentModel;
using Loom.Core;
using Loom.Data.Tasks;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Training;
using Loom.Training.Evaluation;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom infer</c>: t5x's infer entry point, one JSON line per example of a task's split.</summary>
public sealed class InferCommand : Command<InferCommand.Settings>
{
    /// <summary>Options of <c>loom infer</c>.</summary>
    public sealed class Settings : CheckpointSettings
    {
        /// <summary>Task to run on.</summary>
        [CommandOption("--task <NAME>")]
        [Description("The task (see loom data list) or task file (.json) whose examples to predict and score.")]
        public string? Task { get; init; }

        /// <summary>Split of --task.</summary>
        [CommandOption("--split <SPLIT>")]
        [Description("Split of --task (default validation).")]
        public string Split { get; init; } = "validation";

        /// <summary>Output file.</summary>
        [CommandOption("--output <FILE>")]
        [Description("The JSON Lines file to write: {index, inputs, targets, prediction, score} per example; written under a temporary name and renamed when complete.")]
        public string? Output { get; init; }

        /// <summary>Most examples.</summary>
        [CommandOption("--examples <N>")]
        [Description("Most examples, from the start of the split (default: all).")]
        public int? Examples { get; init; }

        /// <summary>Rows per forward pass.</summary>
        [CommandOption("--batch-size <B>")]
        [Description("Examples per batch when scoring and decoding (default 8).")]
        public int BatchSize { get; init; } = 8;

        /// <summary>Most tokens per prediction.</summary>
        [CommandOption("--max-decode-length <M>")]
        [Description("Most tokens generated per prediction, EOS not counted (default 64).")]
        public int MaxDecodeLength { get; init; } = 64;

        /// <summary>Extra task folders.</summary>
        [CommandOption("--task-dir <DIR>")]
        [Description("A folder of task and mixture files to register (repeatable); configs/tasks is read when it exists.")]
        public string[] TaskDirs { get; init; } = [];

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Task)) return ValidationResult.Error("--task NAME is required: the task whose examples to predict (see loom data list)");
            if (string.IsNullOrWhiteSpace(Output)) return ValidationResult.Error("--output FILE is required: the JSON Lines file to write");
            if (Examples is <= 0) return ValidationResult.Error($"--examples = {Examples} must be positive (leave it out for the whole split)");
            if (BatchSize <= 0) return ValidationResult.Error($"--batch-size = {BatchSize} must be positive");
            if (MaxDecodeLength <= 0) return ValidationResult.Error($"--max-decode-length = {MaxDecodeLength} must be positive");
            return base.Validate();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        string configPath = Path.Combine(checkpoint, "config.json");
        var config = File.Exists(configPath) ? RunConfigLoader.ReadResolved(configPath) : null; // a bare model checkpoint has none
        var device = Devices.Resolve(settings.Device ?? config?.Device ?? "auto");
        var progress = new Progress<string>(m => Console.Error.WriteLine(m));
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        GenerativeModels.Require(model, checkpoint);
        using (model)
        {
            var vocabulary = CheckpointVocabulary.Load(checkpoint, manifest);
            var registry = TaskRegistry.WithBuiltInsAndFolders(vocabulary, [.. config?.Data.TaskDirs ?? [], .. settings.TaskDirs], progress: progress);
            string name = settings.Task!;
            if (registry.HasMixture(name))
                throw new ArgumentException($"'{name}' is a mixture: infer runs on one task at a time (its tasks: {string.Join(", ", registry.TasksOf(name))})");
            var task = TaskRegistry.Find(registry, name, vocabulary);
            // Predicted at the run's sequence length, as `loom eval` does: the rows the model trained on, not its longest
            // context (a model fine-tuned on 256-token emails loses accuracy when handed 512).
            int? length = config is null ? null : Math.Min(config.Data.SequenceLength, model.ContextLength);
            int maxDecode = length is int l ? Math.Min(settings.MaxDecodeLength, Math.Max(1, l - 2)) : settings.MaxDecodeLength;
            var options = new TaskEvaluationOptions { MaxExamples = settings.Examples, BatchSize = settings.BatchSize, MaxDecodeLength = maxDecode, SequenceLength = length };
            var inference = new TaskInference(model, vocabulary, device, new EngineSequenceDecoder(vocabulary), options);
            int lines = inference.WriteJsonLines(task, settings.Split, settings.Output!);
            Console.WriteLine($"checkpoint {checkpoint} (step {manifest.Step}): wrote {lines} example{(lines == 1 ? "" : "s")} of {task.Name}/{settings.Split} to {settings.Output}");
        }
        return 0;
    }
}
