using System.ComponentModel;
using System.Text.Json;
using Loom.Core;
using Loom.Data;
using Loom.Models;
using Loom.Models.Adapters;
using Loom.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom export merged --checkpoint BASE_OR_RUN [--adapter DIR] --output DIR</c>: a LoRA adapter merged into its base's weights.</summary>
public sealed class ExportMergedCommand : Command<ExportMergedCommand.Settings>
{
    /// <summary>Options of <c>loom export merged</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>The base, or a LoRA run or checkpoint.</summary>
        [CommandOption("--checkpoint <DIR>")]
        [Description("The base checkpoint (with --adapter), or a LoRA run folder or one of its checkpoints (which name their base).")]
        public string Checkpoint { get; init; } = "";

        /// <summary>The adapter to merge.</summary>
        [CommandOption("--adapter <DIR>")]
        [Description("The LoRA adapter to merge into --checkpoint: a folder with adapter_config.json and adapter_model.safetensors, or a LoRA run folder.")]
        public string? Adapter { get; init; }

        /// <summary>The checkpoint folder to write.</summary>
        [CommandOption("--output <DIR>")]
        [Description("The Loom checkpoint folder to write, holding the merged weights (new or empty); loom generate, eval, serve and train --init-from take it.")]
        public string? Output { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Checkpoint)) return ValidationResult.Error("--checkpoint DIR is required: the base checkpoint, or a LoRA run");
            return string.IsNullOrWhiteSpace(Output) ? ValidationResult.Error("--output DIR is required: the merged checkpoint folder to write") : base.Validate();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string output = settings.Output!;
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new ArgumentException($"{output} is not empty: choose a new --output folder");
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        string? adapter = settings.Adapter is null ? null : LoraCommands.ResolveAdapter(settings.Adapter);
        var (model, manifest) = ModelCheckpoint.Load(checkpoint, TorchSharp.torch.CPU);
        using (model)
        {
            if (adapter is not null) LoraAdapters.Load(adapter, model);
            var lora = model.Lora ?? throw new ArgumentException($"nothing to merge: {checkpoint} holds a whole model; pass --adapter DIR, or a LoRA run as --checkpoint");
            int kernels = lora.Layers.Count;
            lora.Merge();
            // Written under a temporary name and renamed when complete: a failed export leaves nothing behind.
            string temp = $"{Path.TrimEndingDirectorySeparator(Path.GetFullPath(output))}.tmp-{Environment.ProcessId}";
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            Directory.CreateDirectory(temp);
            try
            {
                string vocabulary = Vocabularies.CopyModelFiles(LoraCommands.AbsoluteVocabulary(checkpoint, manifest.Vocabulary), temp);
                ModelCheckpoint.Save(temp, model, new ModelManifest { Model = model.Options, Vocabulary = vocabulary, Step = manifest.Step });
                if (Directory.Exists(output)) Directory.Delete(output); // empty, checked above
                Directory.Move(temp, output);
            }
            finally
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
            Console.WriteLine($"merged the LoRA adapter ({kernels} kernels) of {adapter ?? checkpoint} into {output}");
        }
        return 0;
    }
}

/// <summary>What the LoRA commands and options share.</summary>
internal static class LoraCommands
{
    /// <summary>
    /// The adapter folder <paramref name="path"/> names: itself when it holds adapter_config.json, else the newest
    /// checkpoint of the LoRA run it names.
    /// </summary>
    /// <exception cref="InvalidDataException">No adapter is there; the message says what to pass.</exception>
    public static string ResolveAdapter(string path)
    {
        if (LoraAdapters.IsAdapterFolder(path)) return path;
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"--adapter {path}: no such folder");
        if (TrainingCheckpoint.List(path) is { Count: > 0 } checkpoints)
        {
            if (LoraAdapters.IsAdapterFolder(checkpoints[^1])) return checkpoints[^1];
            throw new InvalidDataException($"--adapter {path}: its checkpoints hold whole models, not LoRA adapters: pass it as --checkpoint, or a LoRA run (trained with --set lora.rank=N)");
        }
        LoraAdapters.ReadConfig(path); // throws: says what an adapter folder holds
        return path;
    }

    /// <summary>
    /// The overrides that make a run fit the base it starts from (<c>train --init-from</c> without --preset or --config):
    /// its model options, and its vocabulary when the base carries one.
    /// </summary>
    public static IEnumerable<string> BaseModelOverrides(string initFrom)
    {
        ModelOptions options;
        string? vocabulary;
        if (initFrom.StartsWith(ModelCheckpoint.HuggingFacePrefix, StringComparison.Ordinal))
        {
            string folder = Path.GetFullPath(initFrom[ModelCheckpoint.HuggingFacePrefix.Length..]);
            options = Loom.Models.Interop.HuggingFaceModels.ReadOptions(folder); // config.json alone: the weights load later
            string tokenizer = Path.Combine(folder, HuggingFaceVocabulary.TokenizerFile);
            vocabulary = File.Exists(tokenizer) ? HuggingFaceVocabulary.SpecPrefix + tokenizer : null;
        }
        else
        {
            string checkpoint;
            ModelManifest manifest;
            try
            {
                checkpoint = TrainingCheckpoint.Resolve(initFrom);
                manifest = ModelCheckpoint.ReadManifest(checkpoint);
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"--init-from {initFrom}: {e.Message}", e);
            }
            options = manifest.Model;
            vocabulary = AbsoluteVocabulary(checkpoint, manifest.Vocabulary);
        }
        yield return "model=" + JsonSerializer.Serialize(options, LoomJson.Options);
        if (vocabulary is not null) yield return "data.vocabulary=" + JsonSerializer.Serialize(vocabulary);
    }

    /// <summary>A checkpoint's vocabulary spec with any tokenizer file it names as a path inside the checkpoint.</summary>
    public static string AbsoluteVocabulary(string checkpoint, string spec) =>
        Vocabularies.ModelFile(spec) is { } file ? Vocabularies.WithModelFile(spec, Path.GetFullPath(Path.Combine(checkpoint, file))) : spec;
}
