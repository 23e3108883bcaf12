using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Adapters;
using Loom.Models.Interop;
using Loom.Models.Quantization;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>What a checkpoint says about its model: enough to rebuild it and its tokenizer.</summary>
public sealed record ModelManifest
{
    /// <summary>Format version of the checkpoint folder; bumped on incompatible changes.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>Model architecture family (the same tag as <see cref="Model"/>'s; kept at the top for readers of older files).</summary>
    public string Architecture { get; init; } = ModelArchitectures.DecoderLm;

    /// <summary>The model's options, tagged by their architecture.</summary>
    public ModelOptions Model { get; init; } = new DecoderLmOptions();

    /// <summary>Vocabulary spec ("byte", "tiktoken:NAME", a SentencePiece model file name or "hf:tokenizer.json"
    /// stored beside the weights; any with "+extra_ids=N").</summary>
    public string Vocabulary { get; init; } = "byte";

    /// <summary>Training step at which the weights were saved.</summary>
    public long Step { get; init; }

    /// <summary>
    /// For a LoRA checkpoint, which holds only an adapter (adapter_config.json, adapter_model.safetensors): the base it goes
    /// over, a checkpoint folder (absolute path) or <c>hf:DIR</c>. Null for a checkpoint that holds its own weights.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] // plain checkpoints' model.json stays as older Loom reads it
    public string? BaseModel { get; init; }
}

/// <summary>
/// The model half of a checkpoint folder: <c>model.safetensors</c> (weights under their module
/// paths, readable by Python's safetensors) and <c>model.json</c> (a <see cref="ModelManifest"/>).
/// Inference needs nothing else. A model carrying LoRA adapters is saved as the adapter alone (PEFT's
/// files, see <see cref="LoraAdapters"/>) with a manifest that names its base (<see cref="ModelManifest.BaseModel"/>).
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>File name of the weights.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>File name of the manifest.</summary>
    public const string ManifestFile = "model.json";

    /// <summary>
    /// Writes the weights and manifest into <paramref name="directory"/> (which must exist); for a model carrying LoRA
    /// adapters, the adapters alone and a manifest naming their base.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is quantized: checkpoints hold float weights.</exception>
    public static void Save(string directory, LanguageModel model, ModelManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(manifest);
        manifest = manifest with { Architecture = manifest.Model.Architecture, BaseModel = model.Lora?.BaseModel };
        if (model.Lora is { } lora)
        {
            if (string.IsNullOrEmpty(lora.BaseModel))
                throw new InvalidOperationException("the model's LoRA adapters name no base model, so a checkpoint of them could not be loaded: attach them with the base's path");
            lora.Save(directory);
            File.WriteAllText(Path.Combine(directory, ManifestFile), JsonSerializer.Serialize(manifest, LoomJson.Options));
            return;
        }
        if (model.Quantization is not null)
            throw new InvalidOperationException("cannot save a quantized model: checkpoints hold float weights; save the float model and quantize when loading (--quantize int8)");
        if (model.TensorParallel.Parts > 1)
            throw new InvalidOperationException("this rank holds only its part of a tensor-parallel model: save it with TrainingCheckpoint.SaveSharded, which writes every rank's part and an index");
        SafeTensors.Save(Path.Combine(directory, WeightsFile), model.state_dict(),
            new Dictionary<string, string> { ["format"] = "pt", ["loom_architecture"] = manifest.Architecture });
        File.WriteAllText(Path.Combine(directory, ManifestFile), JsonSerializer.Serialize(manifest, LoomJson.Options));
    }

    /// <summary>Reads a checkpoint's manifest.</summary>
    /// <exception cref="InvalidDataException">The folder is not a Loom checkpoint, or the manifest is corrupt.</exception>
    public static ModelManifest ReadManifest(string directory)
    {
        if (HuggingFaceModels.IsFolder(directory)) return HuggingFaceModels.ReadManifest(directory);
        string path = Path.Combine(directory, ManifestFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} is not a Loom checkpoint (no {ManifestFile}); pass a run folder or one of its checkpoints/step_* folders");
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: the manifest must be a JSON object");
            // Manifests written before model options were tagged carry the family only at the top.
            string architecture = node[ModelArchitectures.Key]?.GetValue<string>() ?? ModelArchitectures.DecoderLm;
            ModelArchitectures.Check(architecture);
            if (node["model"] is JsonObject model)
            {
                var tagged = ModelArchitectures.WithDefaultArchitecture(model, architecture);
                string inner = ModelArchitectures.Check(tagged[ModelArchitectures.Key]?.GetValue<string>());
                if (inner != architecture)
                    throw new InvalidDataException($"{path}: says architecture '{architecture}' but its model options are '{inner}'; the file was edited by hand or is corrupt");
                node["model"] = tagged;
            }
            var manifest = node.Deserialize<ModelManifest>(LoomJson.Options) ?? throw new InvalidDataException($"{path}: empty manifest");
            if (manifest.FormatVersion != 1) throw new InvalidDataException($"{path}: checkpoint format {manifest.FormatVersion} is not supported by this Loom (expects 1)");
            manifest.Model.Validate();
            return manifest;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or NotSupportedException)
        {
            throw new InvalidDataException($"{path}: corrupt checkpoint manifest ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>
    /// Rebuilds the model of a checkpoint on <paramref name="device"/> with its saved weights, then
    /// quantizes its linear layers for inference when <paramref name="quantization"/> says so (the
    /// report is in <see cref="LanguageModel.Quantization"/>).
    /// </summary>
    /// <param name="directory">The checkpoint folder.</param>
    /// <param name="device">Where to build the model.</param>
    /// <param name="quantization">Int8 weights for inference, or none.</param>
    /// <param name="expectedArchitecture">The family the caller needs (null: any); another is refused.</param>
    /// <exception cref="InvalidDataException">Weights are missing, corrupt or do not fit the manifest's model, or the family is not the expected one.</exception>
    public static (LanguageModel Model, ModelManifest Manifest) Load(string directory, Device? device = null, QuantizationMode quantization = QuantizationMode.None,
        string? expectedArchitecture = null)
    {
        var manifest = ReadManifest(directory);
        if (expectedArchitecture is not null && manifest.Model.Architecture != expectedArchitecture)
            throw new InvalidDataException($"{directory} holds a {manifest.Model.Architecture} model, not a {expectedArchitecture} one: pass a {expectedArchitecture} checkpoint");
        LanguageModel model;
        if (manifest.BaseModel is { } baseModel)
        {
            // A LoRA checkpoint: its base, with the adapter applied over the frozen kernels (not merged).
            model = LoadBase(baseModel, device);
            try
            {
                if (model.Options != manifest.Model)
                    throw new InvalidDataException($"{directory}: its base {baseModel} now holds another model than the adapter was trained over; restore that base");
                LoraAdapters.Load(directory, model);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        else
        {
            model = manifest.Model.Build(device);
            LoadCheckpointWeights(model, directory);
        }
        if (quantization != QuantizationMode.None) model.Quantize(quantization);
        return (model, manifest);
    }

    /// <summary>
    /// Loads a base model for fine-tuning or for LoRA adapters: a Loom checkpoint folder, or <c>hf:DIR</c>, a Hugging Face
    /// model folder (config.json and safetensors).
    /// </summary>
    /// <exception cref="InvalidDataException">The folder holds no model Loom can load.</exception>
    public static LanguageModel LoadBase(string spec, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        return spec.StartsWith(HuggingFacePrefix, StringComparison.Ordinal)
            ? ImportHuggingFace(spec[HuggingFacePrefix.Length..], device)
            : Load(spec, device).Model;
    }

    /// <summary>The prefix that marks a base model as a Hugging Face folder (<c>hf:DIR</c>).</summary>
    public const string HuggingFacePrefix = HuggingFaceModels.SpecPrefix;

    // The one place that imports a Hugging Face folder for fine-tuning and adapters.
    private static LanguageModel ImportHuggingFace(string directory, Device? device) => HuggingFaceModels.Import(directory, device);

    /// <summary>
    /// Copies a checkpoint folder's weights into <paramref name="model"/>: from model.safetensors, or, for a checkpoint
    /// written by a tensor-parallel mesh, from its shards put back together (see <see cref="CheckpointIndex"/>). Either
    /// loads into a whole model or into this rank's part of a split one (resharding onto any mesh).
    /// </summary>
    /// <exception cref="InvalidDataException">Weights are missing or corrupt, the index does not match the shards, or they do not fit the model.</exception>
    /// <remarks>
    /// A LoRA checkpoint (adapter only) loads into a model that carries adapters as its adapter weights (the base is
    /// already there: resuming a LoRA run), and into a plain model as its base's weights with the adapter merged in.
    /// <paramref name="directory"/> may also be <c>hf:DIR</c>, a Hugging Face folder.
    /// </remarks>
    public static void LoadCheckpointWeights(LanguageModel model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (directory.StartsWith(HuggingFacePrefix, StringComparison.Ordinal) || HuggingFaceModels.IsFolder(directory))
        {
            HuggingFaceModels.LoadWeights(model, directory.StartsWith(HuggingFacePrefix, StringComparison.Ordinal) ? directory[HuggingFacePrefix.Length..] : directory);
            return;
        }
        if (File.Exists(Path.Combine(directory, ManifestFile)) && ReadManifest(directory).BaseModel is { } baseModel)
        {
            if (model.Lora is { } lora)
            {
                lora.LoadWeights(directory);
                return;
            }
            LoadCheckpointWeights(model, baseModel);
            LoraAdapters.Load(directory, model).Merge();
            return;
        }
        if (model.Lora is not null)
            throw new InvalidDataException($"{directory} holds a whole model, not a LoRA adapter, but this model carries adapters: load it into a model without them");
        if (!CheckpointIndex.IsSharded(directory))
        {
            LoadWeights(model, Path.Combine(directory, WeightsFile));
            return;
        }
        using var scope = NewDisposeScope();
        var index = CheckpointIndex.Read(directory);
        var whole = ShardedTensors.ReadWhole(directory, index.Model, out var metadata);
        LoadWeights(model, whole, metadata, directory);
    }

    /// <summary>Copies weights from a safetensors file into <paramref name="model"/> (or this rank's part of them), checking every name and shape.</summary>
    /// <exception cref="InvalidDataException">The file is missing, holds another family's weights, or a tensor is missing, extra or of another shape.</exception>
    public static void LoadWeights(LanguageModel model, string weightsPath)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(weightsPath)) throw new InvalidDataException($"checkpoint weights not found: {weightsPath}");
        using var scope = NewDisposeScope();
        var saved = SafeTensors.Load(weightsPath, out var metadata);
        LoadWeights(model, saved, metadata, weightsPath);
    }

    /// <summary>Copies whole tensors by Loom name into <paramref name="model"/> (or this rank's part of them), checking every name and shape.</summary>
    internal static void LoadWeights(LanguageModel model, IReadOnlyDictionary<string, Tensor> saved, IReadOnlyDictionary<string, string> metadata, string source)
    {
        if (metadata.TryGetValue("loom_architecture", out var family) && family != model.Options.Architecture)
            throw new InvalidDataException($"{source} holds the weights of a {family} model, which cannot load into a {model.Options.Architecture} model: use a {model.Options.Architecture} checkpoint, or build the model from the checkpoint's own model.json");
        var layout = model.TensorParallel;
        var state = model.state_dict();
        foreach (var (name, target) in state)
        {
            if (!saved.TryGetValue(name, out var tensor))
                throw new InvalidDataException($"{source}: missing tensor '{name}' (checkpoint from another model shape?)");
            var expected = target.shape.ToArray();
            if (layout.ShardedDim(name) is int dim) expected[dim] *= layout.Parts;
            if (!tensor.shape.SequenceEqual(expected))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(", ", tensor.shape)}], the model expects [{string.Join(", ", expected)}]");
            var part = layout.ShardedDim(name) is int d ? ShardedTensors.Part(tensor, d, layout.Part, layout.Parts) : tensor;
            using (no_grad()) target.copy_(part);
        }
        var extra = saved.Keys.Except(state.Keys).ToList();
        if (extra.Count > 0) throw new InvalidDataException($"{source}: unexpected tensors {string.Join(", ", extra.Take(3))} (checkpoint from another model shape?)");
    }
}
