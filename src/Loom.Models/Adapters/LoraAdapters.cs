using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Interop;
using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Adapters;

/// <summary>One adapted kernel: its module path in the model (e.g. <c>blocks.0.attn.wq</c>), the kernel and its adapter.</summary>
/// <param name="Path">Loom's module path of the kernel.</param>
/// <param name="Kernel">The frozen dense kernel.</param>
/// <param name="Adapter">The low-rank update added to its output.</param>
public sealed record LoraLayer(string Path, Dense Kernel, LoraAdapter Adapter);

/// <summary>What an adapter folder's <c>adapter_config.json</c> says.</summary>
/// <param name="Options">Rank, alpha, dropout and targets (as Loom names them).</param>
/// <param name="BaseModel">PEFT's <c>base_model_name_or_path</c>: the base the adapter was trained over ("" when not recorded).</param>
/// <param name="BaseFingerprint">Loom's fingerprint of that base's weights; null in adapters that Loom did not write.</param>
public sealed record LoraAdapterConfig(LoraOptions Options, string BaseModel, string? BaseFingerprint);

/// <summary>
/// The LoRA adapters attached to a model: every targeted dense kernel is frozen and gains a trainable low-rank update,
/// applied in its forward pass. They are saved alone in PEFT's layout (<c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c> with tensors <c>base_model.model.PATH.lora_A.weight</c> / <c>.lora_B.weight</c>,
/// PATH being Hugging Face's module path when the model is exactly a Llama, Loom's otherwise), loaded over the base they
/// were trained on (checked by a fingerprint of its weights), or merged into the kernels (W += scale · B A).
/// </summary>
public sealed class LoraAdapters
{
    /// <summary>File name of the adapter's config.</summary>
    public const string ConfigFile = "adapter_config.json";

    /// <summary>File name of the adapter's tensors.</summary>
    public const string WeightsFile = "adapter_model.safetensors";

    private const string PeftPrefix = "base_model.model.";
    private const string FingerprintKey = "loom_base_fingerprint";

    private readonly LanguageModel model;

    private LoraAdapters(LanguageModel model, LoraOptions options, IReadOnlyList<LoraLayer> layers, string baseModel, string fingerprint)
    {
        this.model = model;
        Options = options;
        Layers = layers;
        BaseModel = baseModel;
        BaseFingerprint = fingerprint;
    }

    /// <summary>The adapters' options.</summary>
    public LoraOptions Options { get; }

    /// <summary>The adapted kernels, in the model's module order.</summary>
    public IReadOnlyList<LoraLayer> Layers { get; }

    /// <summary>The base the adapters go over: a checkpoint folder, <c>hf:DIR</c>, or "" when unknown.</summary>
    public string BaseModel { get; }

    /// <summary>The fingerprint of the base weights (see <see cref="Fingerprint"/>).</summary>
    public string BaseFingerprint { get; }

    /// <summary>Parameters of the adapters (all of them trainable).</summary>
    public long ParameterCount => Layers.Sum(l => l.Adapter.A.NumberOfElements + l.Adapter.B.NumberOfElements);

    /// <summary>The adapters' parameters, named <c>PATH.lora_A</c> and <c>PATH.lora_B</c> (what the optimizer trains and checkpoints).</summary>
    public IEnumerable<(string Name, Parameter Param)> NamedParameters() =>
        Layers.SelectMany(l => new[] { ($"{l.Path}.lora_A", l.Adapter.A), ($"{l.Path}.lora_B", l.Adapter.B) });

    /// <summary>
    /// Attaches fresh adapters (B = 0: the model's output is unchanged) to the kernels <paramref name="options"/> targets
    /// and freezes every base parameter, so that only the adapters train.
    /// </summary>
    /// <param name="model">A float model with whole (unsplit) layers and no adapters yet.</param>
    /// <param name="options">Rank, alpha, dropout and targets.</param>
    /// <param name="baseModel">Where the base weights come from (recorded in saved adapters); "" when unknown.</param>
    /// <param name="generator">Draws A (torch's default generator when null).</param>
    /// <exception cref="ArgumentException">The options are invalid, or a target matches no kernel of this model.</exception>
    /// <exception cref="InvalidOperationException">The model is quantized, split over ranks, or already has adapters.</exception>
    public static LoraAdapters Attach(LanguageModel model, LoraOptions options, string baseModel = "", Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (model.Lora is not null) throw new InvalidOperationException("the model already carries LoRA adapters: merge them first (loom export merged)");
        if (model.Quantization is not null) throw new InvalidOperationException("LoRA adapters attach to a float model: attach them before quantizing");
        if (model.TensorParallel.Parts > 1) throw new InvalidOperationException("LoRA adapters attach to a whole model, not to one rank's part of a tensor-parallel one");
        string fingerprint = Fingerprint(model);
        var targets = options.CanonicalTargets();
        var kernels = new List<(string Path, Dense Kernel)>();
        foreach (var (path, module) in model.named_modules())
        {
            if (module is not Dense dense) continue;
            string[] parts = path.Split('.');
            if (parts.Length < 2 || !targets.Contains(parts[^1], StringComparer.Ordinal)) continue;
            string parent = LoraOptions.AttentionModules.Contains(parts[^1]) ? "attn" : "mlp";
            if (parts[^2] == parent) kernels.Add((path, dense));
        }
        foreach (var target in targets)
        {
            if (!kernels.Any(k => k.Path.EndsWith("." + target, StringComparison.Ordinal)))
                throw new ArgumentException($"lora.target_modules: '{target}' matches no dense kernel of this {model.Options.Architecture} model{(target == "gate" ? " (its MLP is not gated)" : "")}: adapt others of {string.Join(", ", LoraOptions.ModuleNames)}");
        }
        foreach (var p in model.parameters()) p.requires_grad = false;
        var layers = new List<LoraLayer>(kernels.Count);
        foreach (var (path, kernel) in kernels)
        {
            var weight = kernel.Weight; // (out, in)
            var adapter = new LoraAdapter(weight.shape[1], weight.shape[0], options.Rank, options.Scaling(), options.Dropout, weight.device, generator);
            kernel.Adapter = adapter;
            layers.Add(new LoraLayer(path, kernel, adapter));
        }
        var attached = new LoraAdapters(model, options, layers, baseModel ?? "", fingerprint);
        model.Lora = attached;
        return attached;
    }

    /// <summary>
    /// Loads the adapter of <paramref name="directory"/> over <paramref name="model"/> (attached, not merged), after checking
    /// that it was trained over this very model: the same kernels and shapes and, when it records one, the same
    /// fingerprint of the base weights.
    /// </summary>
    /// <exception cref="InvalidDataException">The folder is not an adapter, is corrupt, or belongs to another base model.</exception>
    public static LoraAdapters Load(string directory, LanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = ReadConfig(directory);
        LoraAdapters attached;
        try
        {
            attached = Attach(model, config.Options, config.BaseModel);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{directory}: the adapter cannot go over this model ({e.Message.Split('\n')[0]}); load it over the base it was trained on ({Described(config.BaseModel)})", e);
        }
        try
        {
            attached.LoadWeights(directory);
        }
        catch
        {
            attached.Detach();
            throw;
        }
        return attached;
    }

    /// <summary>Whether <paramref name="directory"/> holds an adapter (its <see cref="ConfigFile"/>).</summary>
    public static bool IsAdapterFolder(string directory) => File.Exists(Path.Combine(directory, ConfigFile));

    /// <summary>Reads an adapter folder's config (Loom's or PEFT's).</summary>
    /// <exception cref="InvalidDataException">The folder holds no adapter, or its config is not a LoRA one Loom can load.</exception>
    public static LoraAdapterConfig ReadConfig(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new InvalidDataException($"{directory} is not a LoRA adapter folder (no {ConfigFile}): pass a folder with {ConfigFile} and {WeightsFile}, such as a checkpoint of a LoRA run (loom train --set lora.rank=8) or one PEFT saved");
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: must be a JSON object");
            string peftType = node["peft_type"]?.GetValue<string>() ?? "";
            if (peftType != "LORA") throw new InvalidDataException($"{path}: peft_type is '{peftType}', but Loom loads LoRA adapters only (peft_type \"LORA\")");
            foreach (var unsupported in new[] { "use_rslora", "use_dora" })
                if (node[unsupported]?.GetValue<bool>() == true) throw new InvalidDataException($"{path}: {unsupported} = true is not supported by Loom's LoRA: train the adapter without it");
            if (node["fan_in_fan_out"]?.GetValue<bool>() == true) throw new InvalidDataException($"{path}: fan_in_fan_out = true (GPT-2-style Conv1D kernels) is not supported: Loom's kernels are (out, in)");
            if (node["bias"]?.GetValue<string>() is { } bias && bias != "none") throw new InvalidDataException($"{path}: bias = \"{bias}\" is not supported: Loom's adapters train no biases (bias \"none\")");
            var targets = node["target_modules"] switch
            {
                JsonArray list => list.Select(t => t!.GetValue<string>()).ToList(),
                JsonValue one => [one.GetValue<string>()],
                _ => throw new InvalidDataException($"{path}: target_modules is missing"),
            };
            var options = new LoraOptions
            {
                Rank = node["r"]?.GetValue<int>() ?? throw new InvalidDataException($"{path}: r (the rank) is missing"),
                Alpha = node["lora_alpha"]?.GetValue<double>() ?? throw new InvalidDataException($"{path}: lora_alpha is missing"),
                Dropout = node["lora_dropout"]?.GetValue<double>() ?? 0,
                TargetModules = targets,
            };
            options.Validate();
            return new LoraAdapterConfig(options with { TargetModules = options.CanonicalTargets() },
                node["base_model_name_or_path"]?.GetValue<string>() ?? "", node[FingerprintKey]?.GetValue<string>());
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a LoRA adapter config Loom can load ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>
    /// Writes the adapters alone into <paramref name="directory"/> (which must exist): <see cref="ConfigFile"/> as PEFT writes it
    /// plus Loom's fingerprint of the base weights, and <see cref="WeightsFile"/>.
    /// </summary>
    public void Save(string directory)
    {
        var names = PeftModulePaths(model.Options);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var layer in Layers)
        {
            string path = PeftPrefix + names(layer.Path);
            tensors[path + ".lora_A.weight"] = layer.Adapter.A;
            tensors[path + ".lora_B.weight"] = layer.Adapter.B;
        }
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        bool llama = HuggingFaceLlama.Instance.WhyNot(model.Options) is null;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = Options.Rank,
            ["lora_alpha"] = Options.Alpha,
            ["lora_dropout"] = Options.Dropout,
            ["target_modules"] = new JsonArray(Options.CanonicalTargets().Select(t => (JsonNode)(llama ? LoraOptions.PeftAliases.First(a => a.Value == t).Key : t)).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["base_model_name_or_path"] = BaseModel,
            ["inference_mode"] = true,
            [FingerprintKey] = BaseFingerprint,
        };
        File.WriteAllText(Path.Combine(directory, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Copies the adapter tensors of <paramref name="directory"/> into these adapters, checking that they were trained over this base.</summary>
    /// <exception cref="InvalidDataException">The files are missing or corrupt, or the adapter belongs to another base model.</exception>
    public void LoadWeights(string directory)
    {
        var config = ReadConfig(directory);
        string weightsPath = Path.Combine(directory, WeightsFile);
        if (!File.Exists(weightsPath)) throw new InvalidDataException($"{directory}: {WeightsFile} is missing beside {ConfigFile}");
        string other = $"the adapter was trained over another base model ({Described(config.BaseModel)}): load it over that base";
        using var scope = NewDisposeScope();
        var saved = SafeTensors.Load(weightsPath);
        var names = PeftModulePaths(model.Options);
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var layer in Layers)
        {
            foreach (var (suffix, target) in new[] { (".lora_A.weight", layer.Adapter.A), (".lora_B.weight", layer.Adapter.B) })
            {
                // Loom's module paths, or Hugging Face's for a Llama (what PEFT writes over the exported model).
                string loomKey = PeftPrefix + layer.Path + suffix, peftKey = PeftPrefix + names(layer.Path) + suffix;
                string key = saved.ContainsKey(peftKey) ? peftKey : loomKey;
                if (!saved.TryGetValue(key, out var tensor))
                    throw new InvalidDataException($"{directory}: no tensor {peftKey} for kernel {layer.Path}: {other}");
                if (!tensor.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{directory}: {key} has shape [{string.Join(", ", tensor.shape)}] but kernel {layer.Path} needs [{string.Join(", ", target.shape)}]: {other}");
                using (no_grad()) target.copy_(tensor);
                used.Add(key);
            }
        }
        var extra = saved.Keys.Where(k => !used.Contains(k)).ToList();
        if (extra.Count > 0) throw new InvalidDataException($"{directory}: tensors {string.Join(", ", extra.Take(3))} match no kernel of this model: {other}");
        if (config.BaseFingerprint is { } expected && expected != BaseFingerprint)
            throw new InvalidDataException($"{directory}: the adapter was trained over other base weights ({Described(config.BaseModel)}, fingerprint {Short(expected)}) than this model's (fingerprint {Short(BaseFingerprint)}): load it over the base it was trained on");
    }

    /// <summary>Adds every adapter's update into its kernel (W += scale · B A) and removes the adapters; the model then computes the same logits with plain kernels.</summary>
    public void Merge()
    {
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            foreach (var layer in Layers) layer.Kernel.Weight.add_(layer.Adapter.DeltaWeight().to(layer.Kernel.Weight.dtype));
        }
        Detach();
    }

    /// <summary>Removes the adapters without merging them; the base parameters become trainable again.</summary>
    public void Detach()
    {
        foreach (var layer in Layers)
        {
            layer.Kernel.Adapter = null;
            layer.Adapter.Dispose();
        }
        foreach (var p in model.parameters()) p.requires_grad = true;
        model.Lora = null;
    }

    /// <summary>
    /// A fingerprint of a model's weights: SHA-256 over every state tensor's name, dtype, shape and bytes (adapters not
    /// included), as <c>sha256:HEX</c>. Equal weights give equal fingerprints on any device.
    /// </summary>
    public static string Fingerprint(LanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, tensor) in model.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            hash.AppendData(Encoding.UTF8.GetBytes(FormattableString.Invariant($"{name}|{tensor.dtype}|{string.Join(",", tensor.shape)}|")));
            var cpu = tensor.detach().cpu().contiguous();
            hash.AppendData(cpu.bytes);
        }
        return "sha256:" + Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>Loom module path → the path PEFT uses: Hugging Face's for a model that is exactly a Llama, else Loom's own.</summary>
    private static Func<string, string> PeftModulePaths(ModelOptions options)
    {
        if (options is not DecoderLmOptions o || HuggingFaceLlama.Instance.WhyNot(o) is not null) return path => path;
        const string weight = ".weight";
        var map = HuggingFaceLlama.KeyMap(o)
            .Where(k => k.Loom.EndsWith(weight, StringComparison.Ordinal) && k.Hf.EndsWith(weight, StringComparison.Ordinal))
            .ToDictionary(k => k.Loom[..^weight.Length], k => k.Hf[..^weight.Length], StringComparer.Ordinal);
        return path => map.TryGetValue(path, out var hf) ? hf : path;
    }

    private static string Described(string baseModel) => string.IsNullOrEmpty(baseModel) ? "its config names no base" : $"base_model_name_or_path = {baseModel}";

    private static string Short(string fingerprint) => fingerprint.Length > 19 ? fingerprint[..19] : fingerprint;
}
