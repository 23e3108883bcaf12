using System.ComponentModel;
using Loom.Data;
using Loom.Models;
using Loom.Models.Interop;
using Loom.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom import hf DIR --output CHECKPOINT</c>: a Hugging Face model folder as a Loom checkpoint (see <see cref="HuggingFaceModels.Architectures"/>).</summary>
public sealed class ImportHfCommand : Command<ImportHfCommand.Settings>
{
    /// <summary>Options of <c>loom import hf</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>The Hugging Face folder.</summary>
        [CommandArgument(0, "<DIR>")]
        [Description("A Hugging Face model folder: config.json and model.safetensors (or shards with model.safetensors.index.json).")]
        public string Directory { get; init; } = "";

        /// <summary>The checkpoint folder to write.</summary>
        [CommandOption("--output <DIR>")]
        [Description("The Loom checkpoint folder to write (loom generate, eval, serve and train --set training.init_from=DIR take it).")]
        public string? Output { get; init; }

        /// <summary>The vocabulary spec.</summary>
        [CommandOption("--vocabulary <SPEC>")]
        [Description("The model's vocabulary as Loom names it (byte, tiktoken:NAME, hf:PATH, or a SentencePiece .model file); default: the folder's tokenizer.model, else its tokenizer.json.")]
        public string? Vocabulary { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate() =>
            string.IsNullOrWhiteSpace(Output) ? ValidationResult.Error("--output DIR is required: the Loom checkpoint folder to write") : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string output = settings.Output!;
        if (File.Exists(Path.Combine(output, ModelCheckpoint.ManifestFile)))
            throw new ArgumentException($"{output} already holds a Loom checkpoint: choose another --output");
        string tokenizer = Path.Combine(settings.Directory, "tokenizer.model");
        string tokenizerJson = Path.Combine(settings.Directory, HuggingFaceVocabulary.TokenizerFile);
        string vocabulary = settings.Vocabulary
            ?? (File.Exists(tokenizer) ? tokenizer
                : File.Exists(tokenizerJson) ? HuggingFaceVocabulary.SpecPrefix + tokenizerJson
                : throw new ArgumentException($"{settings.Directory} has neither tokenizer.model nor tokenizer.json: pass --vocabulary SPEC"));
        using var model = HuggingFaceModels.Import(settings.Directory);
        var vocab = Vocabularies.Create(vocabulary);
        if (vocab is HuggingFaceVocabulary { ConfigPadToken: null } hf && vocab.PadId == model.Options.VocabSize)
            throw new ArgumentException($"{hf.TokenizerPath} names no pad token, so Loom would add one at id {vocab.PadId}, past the model's {model.Options.VocabSize} ids: set \"pad_token\" in {HuggingFaceVocabulary.ConfigFile} beside it to an existing token (Llama and Mistral folders commonly use \"<unk>\" or \"</s>\")");
        if (vocab.Size > model.Options.VocabSize)
            throw new ArgumentException($"the vocabulary has {vocab.Size} ids but config.json says vocab_size = {model.Options.VocabSize}: pass the model's own tokenizer");
        // Written under a temporary name and renamed when complete, as training checkpoints are.
        string temp = $"{Path.TrimEndingDirectorySeparator(Path.GetFullPath(output))}.tmp-{Environment.ProcessId}";
        System.IO.Directory.CreateDirectory(temp);
        try
        {
            vocabulary = Vocabularies.CopyModelFiles(vocabulary, temp);
            ModelCheckpoint.Save(temp, model, new ModelManifest { Model = model.Options, Vocabulary = vocabulary });
            System.IO.Directory.Move(temp, output);
        }
        finally
        {
            if (System.IO.Directory.Exists(temp)) System.IO.Directory.Delete(temp, recursive: true); // a failed import leaves nothing behind
        }
        Console.WriteLine(FormattableString.Invariant($"imported {settings.Directory} ({model.ParameterCount / 1e6:F2}M parameters) into {output}"));
        return 0;
    }
}

/// <summary><c>loom export hf --checkpoint RUN --output DIR</c>: a Loom checkpoint as a Hugging Face model folder, in the first architecture that represents it exactly.</summary>
public sealed class ExportHfCommand : Command<ExportHfCommand.Settings>
{
    /// <summary>Options of <c>loom export hf</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Checkpoint or run folder.</summary>
        [CommandOption("--checkpoint <DIR>")]
        [Description("A run folder (its newest checkpoint is used) or a checkpoints/step_* folder.")]
        public string Checkpoint { get; init; } = "";

        /// <summary>The folder to write.</summary>
        [CommandOption("--output <DIR>")]
        [Description("The Hugging Face folder to write: config.json and model.safetensors, as the first architecture that represents the model exactly.")]
        public string? Output { get; init; }

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Checkpoint)) return ValidationResult.Error("--checkpoint DIR is required");
            return string.IsNullOrWhiteSpace(Output) ? ValidationResult.Error("--output DIR is required: the Hugging Face folder to write") : base.Validate();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var manifest = ModelCheckpoint.ReadManifest(checkpoint);
        if (HuggingFaceModels.WhyNot(manifest.Model) is { } reason)
            throw new ArgumentException($"{checkpoint} is not exactly a Hugging Face model: {reason}");
        if (Directory.Exists(settings.Output) && Directory.EnumerateFileSystemEntries(settings.Output).Any())
            throw new ArgumentException($"{settings.Output} is not empty: choose a new --output folder");
        // Written under a temporary name and renamed when complete: a failed export leaves nothing behind.
        string temp = $"{Path.TrimEndingDirectorySeparator(Path.GetFullPath(settings.Output!))}.tmp-{Environment.ProcessId}";
        var (model, _) = ModelCheckpoint.Load(checkpoint);
        string architecture;
        IReadOnlyList<string> tokenizerFiles;
        using (model)
        {
            try
            {
                var vocabulary = Inference.CheckpointVocabulary.Load(checkpoint, manifest);
                architecture = HuggingFaceModels.Export(model, temp, eosTokenId: vocabulary.EosId).Names[0];
                tokenizerFiles = HuggingFaceTokenizerFiles.Write(manifest.Vocabulary, checkpoint, temp);
                if (Directory.Exists(settings.Output)) Directory.Delete(settings.Output); // empty, checked above
                Directory.Move(temp, settings.Output!);
            }
            finally
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
        }
        Console.WriteLine($"exported {checkpoint} as {architecture} into {settings.Output} (config.json, model.safetensors, {string.Join(", ", tokenizerFiles)})");
        return 0;
    }
}

/// <summary><c>loom export gguf --checkpoint RUN --output FILE.gguf</c>: a Loom checkpoint as a llama.cpp GGUF file.</summary>
public sealed class ExportGgufCommand : Command<ExportGgufCommand.Settings>
{
    /// <summary>Options of <c>loom export gguf</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Checkpoint or run folder.</summary>
        [CommandOption("--checkpoint <DIR>")]
        [Description("A run folder (its newest checkpoint is used) or a checkpoints/step_* folder.")]
        public string Checkpoint { get; init; } = "";

        /// <summary>The file to write.</summary>
        [CommandOption("--output <FILE>")]
        [Description("The .gguf file to write (llama.cpp, Ollama, LM Studio); written under a temporary name and renamed when complete.")]
        public string? Output { get; init; }

        /// <summary>The kernels' element type.</summary>
        [CommandOption("--type <TYPE>")]
        [Description("f32 (default), f16 or q8_0 (ggml's 8-bit blocks of 32) for the kernels; norms stay f32.")]
        public string Type { get; init; } = "f32";

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Checkpoint)) return ValidationResult.Error("--checkpoint DIR is required");
            if (string.IsNullOrWhiteSpace(Output)) return ValidationResult.Error("--output FILE.gguf is required: the file to write");
            return Type.ToLowerInvariant() switch
            {
                "f32" or "f16" or "q8_0" => base.Validate(),
                _ => ValidationResult.Error($"--type takes f32, f16 or q8_0, not '{Type}'"),
            };
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var manifest = ModelCheckpoint.ReadManifest(checkpoint);
        if (HuggingFaceLlama.Instance.WhyNot(manifest.Model) is { } reason)
            throw new ArgumentException($"{checkpoint} is not exactly a llama.cpp Llama: {reason}");
        var vocabulary = Inference.CheckpointVocabulary.Load(checkpoint, manifest);
        var type = settings.Type.ToLowerInvariant() switch { "f16" => GgmlType.F16, "q8_0" => GgmlType.Q8_0, _ => GgmlType.F32 };
        string output = settings.Output!;
        string temp = $"{output}.tmp-{Environment.ProcessId}";
        var (model, _) = ModelCheckpoint.Load(checkpoint);
        using (model)
        {
            try
            {
                GgufLlama.Export(model, temp, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(settings.Checkpoint))), type, vocabulary);
                File.Move(temp, output, overwrite: true);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
        }
        Console.WriteLine(FormattableString.Invariant($"exported {checkpoint} to {output} ({settings.Type.ToLowerInvariant()}, {new FileInfo(output).Length / 1e6:F1} MB); serve it with llama.cpp or Ollama (see README)"));
        return 0;
    }
}
