using System.Text.Json;
using Loom.Core;
using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>What a checkpoint says about its model: enough to rebuild it and its tokenizer.</summary>
public sealed record ModelManifest
{
    /// <summary>Format version of the checkpoint folder; bumped on incompatible changes.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>Model architecture family.</summary>
    public string Architecture { get; init; } = "decoder_lm";

    /// <summary>The model's options.</summary>
    public DecoderLmOptions Model { get; init; } = new();

    /// <summary>Vocabulary spec ("byte", "tiktoken:NAME", a SentencePiece model file name stored beside
    /// the weights; any with "+extra_ids=N").</summary>
    public string Vocabulary { get; init; } = "byte";

    /// <summary>Training step at which the weights were saved.</summary>
    public long Step { get; init; }
}

/// <summary>
/// The model half of a checkpoint folder: <c>model.safetensors</c> (weights under their module
/// paths, readable by Python's safetensors) and <c>model.json</c> (a <see cref="ModelManifest"/>).
/// Inference needs nothing else.
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>File name of the weights.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>File name of the manifest.</summary>
    public const string ManifestFile = "model.json";

    /// <summary>Writes the weights and manifest into <paramref name="directory"/> (which must exist).</summary>
    /// <exception cref="InvalidOperationException">The model is quantized: checkpoints hold float weights.</exception>
    public static void Save(string directory, DecoderLm model, ModelManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Quantization is not null)
            throw new InvalidOperationException("cannot save a quantized model: checkpoints hold float weights; save the float model and quantize when loading (--quantize int8)");
        SafeTensors.Save(Path.Combine(directory, WeightsFile), model.state_dict(),
            new Dictionary<string, string> { ["format"] = "pt", ["loom_architecture"] = manifest.Architecture });
        File.WriteAllText(Path.Combine(directory, ManifestFile), JsonSerializer.Serialize(manifest, LoomJson.Options));
    }

    /// <summary>Reads a checkpoint's manifest.</summary>
    /// <exception cref="InvalidDataException">The folder is not a Loom checkpoint, or the manifest is corrupt.</exception>
    public static ModelManifest ReadManifest(string directory)
    {
        string path = Path.Combine(directory, ManifestFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} is not a Loom checkpoint (no {ManifestFile}); pass a run folder or one of its checkpoints/step_* folders");
        try
        {
            var manifest = JsonSerializer.Deserialize<ModelManifest>(File.ReadAllText(path), LoomJson.Options)
                           ?? throw new InvalidDataException($"{path}: empty manifest");
            if (manifest.FormatVersion != 1) throw new InvalidDataException($"{path}: checkpoint format {manifest.FormatVersion} is not supported by this Loom (expects 1)");
            manifest.Model.Validate();
            return manifest;
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: corrupt checkpoint manifest ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>
    /// Rebuilds the model of a checkpoint on <paramref name="device"/> with its saved weights, then
    /// quantizes its linear layers for inference when <paramref name="quantization"/> says so (the
    /// report is in <see cref="DecoderLm.Quantization"/>).
    /// </summary>
    /// <exception cref="InvalidDataException">Weights are missing, corrupt or do not fit the manifest's model.</exception>
    public static (DecoderLm Model, ModelManifest Manifest) Load(string directory, Device? device = null, QuantizationMode quantization = QuantizationMode.None)
    {
        var manifest = ReadManifest(directory);
        var model = new DecoderLm(manifest.Model, device);
        LoadWeights(model, Path.Combine(directory, WeightsFile));
        if (quantization != QuantizationMode.None) model.Quantize(quantization);
        return (model, manifest);
    }

    /// <summary>Copies weights from a safetensors file into <paramref name="model"/>, checking every name and shape.</summary>
    public static void LoadWeights(DecoderLm model, string weightsPath)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(weightsPath)) throw new InvalidDataException($"checkpoint weights not found: {weightsPath}");
        using var scope = NewDisposeScope();
        var saved = SafeTensors.Load(weightsPath);
        var state = model.state_dict();
        foreach (var (name, target) in state)
        {
            if (!saved.TryGetValue(name, out var source))
                throw new InvalidDataException($"{weightsPath}: missing tensor '{name}' (checkpoint from another model shape?)");
            if (!source.shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{weightsPath}: tensor '{name}' has shape [{string.Join(", ", source.shape)}], the model expects [{string.Join(", ", target.shape)}]");
            using (no_grad()) target.copy_(source);
        }
        var extra = saved.Keys.Except(state.Keys).ToList();
        if (extra.Count > 0) throw new InvalidDataException($"{weightsPath}: unexpected tensors {string.Join(", ", extra.Take(3))} (checkpoint from another model shape?)");
    }
}
