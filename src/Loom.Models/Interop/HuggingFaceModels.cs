using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face model folders as transformers' <c>save_pretrained</c> writes them (config.json and model.safetensors,
/// or shards listed in model.safetensors.index.json), read into Loom models and written from them, for every
/// architecture in <see cref="Architectures"/>.
/// </summary>
public static class HuggingFaceModels
{
    /// <summary>The config file of a Hugging Face model folder.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The weights of an unsharded Hugging Face model folder.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>The index of a sharded one: <c>{"metadata": {...}, "weight_map": {tensor: file}}</c>.</summary>
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>A Hugging Face fast tokenizer.</summary>
    public const string TokenizerFile = "tokenizer.json";

    /// <summary>A SentencePiece model, as Llama 2, Mistral, Gemma and T5 folders carry it.</summary>
    public const string SentencePieceTokenizerFile = "tokenizer.model";

    /// <summary>Loom's byte vocabulary: 256 bytes, EOS and PAD.</summary>
    private const int ByteVocabularySize = 258;

    /// <summary>The prefix that names a Hugging Face folder where Loom takes a checkpoint (<c>hf:DIR</c>).</summary>
    public const string SpecPrefix = "hf:";

    /// <summary>The architectures Loom reads and writes, in the order export tries them.</summary>
    public static IReadOnlyList<IHuggingFaceArchitecture> Architectures { get; } =
        [HuggingFaceLlama.Instance, HuggingFaceMixtral.Instance, HuggingFaceGpt2.Instance, HuggingFaceGemma.Gemma, HuggingFaceGemma.Gemma2, HuggingFaceT5.Instance];

    /// <summary>Every <c>architectures</c> name Loom imports.</summary>
    public static IEnumerable<string> SupportedNames => Architectures.SelectMany(a => a.Names);

    /// <summary>
    /// Whether <paramref name="path"/> is a Hugging Face folder: config.json beside model.safetensors or a shard index,
    /// and no model.json (a Loom checkpoint has one; a Loom run folder has a config.json but no weights beside it).
    /// </summary>
    public static bool IsFolder(string path) =>
        File.Exists(Path.Combine(path, ConfigFile)) && !File.Exists(Path.Combine(path, ModelCheckpoint.ManifestFile))
        && (File.Exists(Path.Combine(path, WeightsFile)) || File.Exists(Path.Combine(path, IndexFile)));

    /// <summary>The architecture that reads <paramref name="config"/>.</summary>
    /// <exception cref="InvalidDataException">None does; the message names the supported ones.</exception>
    public static IHuggingFaceArchitecture For(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Architectures.FirstOrDefault(a => a.Names.Contains(config.Architecture))
            ?? throw config.Error($"architecture {config.Architecture} is not supported: Loom imports {string.Join(", ", SupportedNames)}");
    }

    /// <summary>The first architecture that represents <paramref name="model"/> exactly, or null.</summary>
    public static IHuggingFaceArchitecture? For(ModelOptions model) => Architectures.FirstOrDefault(a => a.WhyNot(model) is null);

    /// <summary>Why no architecture represents <paramref name="model"/> exactly (each one's first difference); null when one does.</summary>
    public static string? WhyNot(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (For(model) is not null) return null;
        return string.Join("; ", Architectures.Select(a => $"not {a.Names[0]}: {a.WhyNot(model)}"));
    }

    /// <summary>Loom model options equal to the folder's config.json.</summary>
    /// <exception cref="InvalidDataException">The architecture or an option is not supported; the message names it.</exception>
    public static ModelOptions ReadOptions(string directory)
    {
        var config = HuggingFaceConfig.Read(directory);
        return For(config).ReadOptions(config);
    }

    /// <summary>
    /// A Loom manifest for a Hugging Face folder, so that it serves wherever a checkpoint does: its model options, and
    /// its vocabulary from the folder's <c>tokenizer.model</c> (SentencePiece) or else its <c>tokenizer.json</c>, both
    /// named relative to the folder as a checkpoint's vocabulary files are.
    /// </summary>
    /// <exception cref="InvalidDataException">The config is not supported, or the folder has no tokenizer and is not a byte-vocabulary model.</exception>
    public static ModelManifest ReadManifest(string directory)
    {
        var options = ReadOptions(directory);
        string vocabulary = File.Exists(Path.Combine(directory, SentencePieceTokenizerFile)) ? SentencePieceTokenizerFile
            : File.Exists(Path.Combine(directory, TokenizerFile)) ? SpecPrefix + TokenizerFile
            : options.VocabSize == ByteVocabularySize ? "byte"
            : throw new InvalidDataException($"{directory} has neither {SentencePieceTokenizerFile} nor {TokenizerFile}: put the model's tokenizer beside config.json");
        return new ModelManifest { Architecture = options.Architecture, Model = options, Vocabulary = vocabulary };
    }

    /// <summary>
    /// Reads a Hugging Face folder into a Loom model on <paramref name="device"/>, checking every tensor's name and shape.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// The architecture or a config option is not supported (the message names what is), or a tensor is missing, extra
    /// or of another shape (the message names it), or a file is missing or truncated.
    /// </exception>
    public static LanguageModel Import(string directory, Device? device = null)
    {
        var model = ReadOptions(directory).Build(device); // built outside any scope, which frees only what is read
        try
        {
            LoadWeights(model, directory);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Copies a Hugging Face folder's weights into <paramref name="model"/>, which must have the options the folder's
    /// config.json gives (see <see cref="ReadOptions"/>), checking every tensor's name and shape.
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor is missing, extra or of another shape (the message names it), or a file is missing or truncated.</exception>
    public static void LoadWeights(LanguageModel model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = HuggingFaceConfig.Read(directory);
        var architecture = For(config);
        using var scope = NewDisposeScope();
        var tensors = new HuggingFaceTensors(ReadWeights(directory), directory);
        var loom = architecture.ToLoom(model.Options, tensors);
        var extra = tensors.Remaining;
        if (extra.Count > 0)
            throw new InvalidDataException($"{directory}: unexpected tensors {string.Join(", ", extra.Take(3))}{(extra.Count > 3 ? ", …" : "")} (not part of the {architecture.Names[0]} config.json describes)");
        // A tensor-parallel rank takes its part of each whole tensor, as it does from a Loom checkpoint.
        ModelCheckpoint.LoadWeights(model, loom, new Dictionary<string, string>(), directory);
    }

    /// <summary>
    /// Writes <paramref name="model"/> as transformers would save the same model: config.json and model.safetensors
    /// (float32, Hugging Face's tensor names), into <paramref name="directory"/> (created if missing), as the first
    /// architecture that represents it exactly.
    /// </summary>
    /// <returns>The architecture written.</returns>
    /// <exception cref="ArgumentException">No architecture represents the model exactly; the message names the option that differs.</exception>
    public static IHuggingFaceArchitecture Export(LanguageModel model, string directory, int? bosTokenId = null, int? eosTokenId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (WhyNot(model.Options) is { } reason) throw new ArgumentException($"this model is not exactly a Hugging Face model: {reason}");
        var architecture = For(model.Options)!;
        Export(architecture, model, directory, bosTokenId, eosTokenId);
        return architecture;
    }

    /// <summary>Writes <paramref name="model"/> as <paramref name="architecture"/> (see <see cref="Export(LanguageModel, string, int?, int?)"/>).</summary>
    /// <exception cref="ArgumentException">The architecture does not represent the model exactly; the message names the option that differs.</exception>
    public static void Export(IHuggingFaceArchitecture architecture, LanguageModel model, string directory, int? bosTokenId = null, int? eosTokenId = null)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        ArgumentNullException.ThrowIfNull(model);
        if (architecture.WhyNot(model.Options) is { } reason) throw new ArgumentException($"this model is not exactly a Hugging Face {architecture.Names[0]}: {reason}");
        if (model.TensorParallel.Parts > 1) throw new ArgumentException("this rank holds part of a tensor-parallel model: export from its checkpoint in one process");
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        var state = model.state_dict();
        var tensors = new SortedDictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in architecture.ToHuggingFace(model.Options, state))
            tensors[name] = tensor.to(float32).contiguous();
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var config = architecture.WriteConfig(model.Options, bosTokenId, eosTokenId);
        File.WriteAllText(Path.Combine(directory, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Every tensor of the folder's safetensors: one file, or the shards its index lists.</summary>
    /// <exception cref="InvalidDataException">A file is missing or truncated, or the index does not match the shards.</exception>
    public static Dictionary<string, Tensor> ReadWeights(string directory)
    {
        string single = Path.Combine(directory, WeightsFile), index = Path.Combine(directory, IndexFile);
        if (File.Exists(index))
        {
            JsonObject map;
            try
            {
                map = JsonNode.Parse(File.ReadAllText(index))?["weight_map"] as JsonObject ?? throw new InvalidDataException($"{index}: no \"weight_map\" object");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{index}: not valid JSON ({e.Message.Split('\n')[0]})", e);
            }
            var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var file in map.Select(p => p.Value!.GetValue<string>()).Distinct())
            {
                string path = Path.Combine(directory, file);
                if (!File.Exists(path)) throw new InvalidDataException($"{index} lists {file}, which is missing");
                foreach (var (name, tensor) in SafeTensors.Load(path))
                {
                    if (map[name]?.GetValue<string>() != file) throw new InvalidDataException($"{path} holds '{name}', which {IndexFile} does not place there");
                    all[name] = tensor;
                }
            }
            var absent = map.Select(p => p.Key).Where(k => !all.ContainsKey(k)).ToList();
            if (absent.Count > 0) throw new InvalidDataException($"{index} places '{absent[0]}' in {map[absent[0]]}, which does not hold it");
            return all;
        }
        if (!File.Exists(single)) throw new InvalidDataException($"{directory}: neither {WeightsFile} nor {IndexFile} is there");
        return SafeTensors.Load(single);
    }

    /// <summary>Writes <paramref name="tensors"/> as transformers shards a model: files of at most <paramref name="maxShardBytes"/> and an index.</summary>
    public static void WriteSharded(string directory, IReadOnlyDictionary<string, Tensor> tensors, long maxShardBytes)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var shards = new List<SortedDictionary<string, Tensor>> { new(StringComparer.Ordinal) };
        long bytes = 0;
        foreach (var (name, tensor) in tensors.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            long size = tensor.numel() * tensor.ElementSize;
            if (bytes > 0 && bytes + size > maxShardBytes)
            {
                shards.Add(new SortedDictionary<string, Tensor>(StringComparer.Ordinal));
                bytes = 0;
            }
            shards[^1][name] = tensor;
            bytes += size;
        }
        var weightMap = new JsonObject();
        for (int i = 0; i < shards.Count; i++)
        {
            string file = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors");
            SafeTensors.Save(Path.Combine(directory, file), shards[i], new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var name in shards[i].Keys) weightMap[name] = file;
        }
        long total = tensors.Values.Sum(t => t.numel() * t.ElementSize);
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(directory, IndexFile), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
