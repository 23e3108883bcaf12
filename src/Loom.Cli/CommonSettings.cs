using System.ComponentModel;
using Loom.Data;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Models.Adapters;
using Loom.Models.Quantization;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary>Options shared by every command that runs a model.</summary>
public class DeviceSettings : CommandSettings
{
    /// <summary>cpu, cuda, cuda:N or auto.</summary>
    [CommandOption("--device <DEVICE>")]
    [Description("cpu, cuda, cuda:N or auto (CUDA when libtorch sees a GPU). Default: auto.")]
    public string? Device { get; init; }

    /// <summary>CPU threads for libtorch.</summary>
    [CommandOption("--threads <N>")]
    [Description("CPU threads for libtorch (default: all cores).")]
    public int? Threads { get; init; }
}

/// <summary>Options of commands that read a config.</summary>
public class ConfigSettings : DeviceSettings
{
    /// <summary>Run config file or name in configs/runs.</summary>
    [CommandOption("-c|--config <FILE>")]
    [Description("Run config: a JSON file or the name of one in configs/runs (e.g. demo).")]
    public string? Config { get; init; }

    /// <summary>Model preset.</summary>
    [CommandOption("-p|--preset <NAME>")]
    [Description("Model preset: tiny, palm-8b, palm-62b, palm-540b, or a JSON file. Default: the run config's, else tiny.")]
    public string? Preset { get; init; }

    /// <summary>Text to train on.</summary>
    [CommandOption("--data <FILE_OR_DIR>")]
    [Description("Train on this text file or folder instead of the built-in Austen corpus.")]
    public string? Data { get; init; }

    /// <summary>Registered task to train on.</summary>
    [CommandOption("--task <NAME>")]
    [Description("Train on a task (see loom data list) or a task file (.json): language-modelling tasks as one token stream, tasks with inputs and targets as packed rows with loss on the targets.")]
    public string? Task { get; init; }

    /// <summary>Registered mixture to train on.</summary>
    [CommandOption("--mixture <NAME>")]
    [Description("Train on a mixture of tasks (see loom data list), packed and sampled by its rates; evaluated per task.")]
    public string? Mixture { get; init; }

    /// <summary>Extra task folders.</summary>
    [CommandOption("--task-dir <DIR>")]
    [Description("A folder of task and mixture files to register (repeatable); configs/tasks is read when it exists.")]
    public string[] TaskDirs { get; init; } = [];

    /// <summary>Read tasks from the offline cache.</summary>
    [CommandOption("--cached")]
    [Description("Read the task or mixture from the offline cache (build it with loom data cache TASK); a missing or stale cache is an error.")]
    public bool Cached { get; init; }

    /// <summary>Config overrides.</summary>
    [CommandOption("--set <KEY=VALUE>")]
    [Description("Override a config value, e.g. --set model.num_layers=4 --set training.steps=500 (repeatable).")]
    public string[] Set { get; init; } = Array.Empty<string>();

    /// <summary>Run folder.</summary>
    [CommandOption("--run-dir <DIR>")]
    [Description("Run folder for config.json, metrics.jsonl, tensorboard/, loss.png and checkpoints/. Default: runs/<preset>-<time>.")]
    public string? RunDir { get; init; }

    /// <summary>The overrides implied by the typed options plus --set.</summary>
    public virtual IEnumerable<string> Overrides()
    {
        if (Data is not null) yield return $"data.path={System.Text.Json.JsonSerializer.Serialize(Data)}";
        if (Task is not null) yield return $"data.task={System.Text.Json.JsonSerializer.Serialize(Task)}";
        if (Mixture is not null) yield return $"data.mixture={System.Text.Json.JsonSerializer.Serialize(Mixture)}";
        if (TaskDirs.Length > 0) yield return $"data.task_dirs={System.Text.Json.JsonSerializer.Serialize(TaskDirs.Select(Path.GetFullPath))}";
        if (Cached) yield return "data.use_cache=true";
        if (Device is not null) yield return $"device={System.Text.Json.JsonSerializer.Serialize(Device)}";
        foreach (var s in Set) yield return s;
    }
}

/// <summary>Options of commands that load a checkpoint.</summary>
public class CheckpointSettings : DeviceSettings
{
    /// <summary>Checkpoint or run folder.</summary>
    [CommandOption("--checkpoint <DIR>")]
    [Description("A run folder (its newest checkpoint is used) or a checkpoints/step_* folder.")]
    public string Checkpoint { get; init; } = "";

    /// <summary>Weight quantization applied at load time.</summary>
    [CommandOption("--quantize <MODE>")]
    [Description("Quantize the linear layers' weights at load time: int8 (per-output-channel scales, about 4x smaller) or none (default).")]
    public string? Quantize { get; init; }

    /// <summary>A LoRA adapter to apply over the checkpoint's model.</summary>
    [CommandOption("--adapter <DIR>")]
    [Description("Apply this LoRA adapter over the checkpoint (unmerged): a folder with adapter_config.json and adapter_model.safetensors, such as a LoRA run or one of its checkpoints, or one PEFT saved. It must have been trained over this checkpoint.")]
    public string? Adapter { get; init; }

    /// <summary>The parsed <see cref="Quantize"/>.</summary>
    public QuantizationMode Quantization => ParseQuantization(Quantize) ?? throw new ArgumentException(QuantizeError);

    private string QuantizeError => $"--quantize takes int8 or none, not '{Quantize}'";

    private static QuantizationMode? ParseQuantization(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "none" => QuantizationMode.None,
        "int8" => QuantizationMode.Int8,
        _ => null,
    };

    /// <inheritdoc />
    public override Spectre.Console.ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(Checkpoint)) return Spectre.Console.ValidationResult.Error("--checkpoint DIR is required");
        if (ParseQuantization(Quantize) is null) return Spectre.Console.ValidationResult.Error(QuantizeError);
        return base.Validate();
    }

    /// <summary>
    /// Loads the checkpoint's model on <paramref name="device"/> with the --adapter applied, quantized as asked, reporting
    /// the saving to standard error.
    /// </summary>
    public (LanguageModel Model, ModelManifest Manifest) LoadModel(string checkpoint, TorchSharp.torch.Device device)
    {
        var (model, manifest) = ModelCheckpoint.Load(checkpoint, device);
        try
        {
            if (Adapter is not null) LoraAdapters.Load(LoraCommands.ResolveAdapter(Adapter), model);
            if (Quantization != QuantizationMode.None) model.Quantize(Quantization);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        if (model.Quantization is { } report) Console.Error.WriteLine(report);
        return (model, manifest);
    }
}

/// <summary>Options of the data commands: where task and mixture files are registered from.</summary>
public class TaskFolderSettings : CommandSettings
{
    /// <summary>Extra task folders.</summary>
    [CommandOption("--task-dir <DIR>")]
    [Description("A folder of task and mixture files to register (repeatable); configs/tasks is read when it exists.")]
    public string[] TaskDirs { get; init; } = [];

    /// <summary>The built-in tasks plus those of configs/tasks and of --task-dir.</summary>
    public TaskRegistry Registry(IVocabulary vocabulary, IProgress<string>? progress = null) =>
        TaskRegistry.WithBuiltInsAndFolders(vocabulary, TaskDirs, progress: progress);
}
