using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's Llama layout (<c>LlamaForCausalLM</c>, and <c>MistralForCausalLM</c>, which stores the same tensors):
/// a folder with <c>config.json</c> and <c>model.safetensors</c> (or shards listed in
/// <c>model.safetensors.index.json</c>), as transformers' <c>save_pretrained</c> writes it. A Loom decoder with serial
/// blocks, RMSNorm, SwiGLU, rotary positions (Loom rotates the two halves of each head, as transformers does, so the
/// query and key kernels need no permutation), no biases and no mixture of experts is exactly such a model.
/// </summary>
public static class HuggingFaceLlama
{
    /// <summary>The architectures <see cref="Import"/> reads.</summary>
    public static IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM", "MistralForCausalLM"];

    /// <summary>The config file of a Hugging Face model folder.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The weights of an unsharded Hugging Face model folder.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>The index of a sharded one: <c>{"metadata": {...}, "weight_map": {tensor: file}}</c>.</summary>
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>
    /// Why <paramref name="model"/>'s options are not exactly a Llama, naming the first option that differs; null when they are.
    /// </summary>
    public static string? WhyNotLlama(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not DecoderLmOptions options)
            return $"model.architecture = {model.Architecture}: only decoder-only (decoder_lm) models are Llamas";
        return options switch
        {
            { ParallelBlock: true } => "model.parallel_block = true: PaLM's parallel block (one norm feeding attention and MLP side by side) has no exact Hugging Face counterpart (GPT-J shares one norm but has LayerNorm with biases and a GELU MLP; GPT-NeoX's parallel residual has two norms); train with model.parallel_block = false",
            { Norm: not NormKind.RmsNorm } => $"model.norm = {options.Norm}: Llama uses RMSNorm",
            { Activation: not MlpActivation.SwiGlu } => $"model.activation = {options.Activation}: Llama's MLP is SwiGLU",
            { Positions: not PositionEncoding.Rotary } => $"model.positions = {options.Positions}: Llama uses rotary positions",
            { UseBias: true } => "model.use_bias = true: Llama's kernels have no biases",
            { Moe: not null } => "model.moe: a mixture of experts is MixtralForCausalLM, which this Loom does not write yet",
            { SharedEmbeddings: true, ScaleSharedLogits: true } => "model.shared_embeddings with model.scale_shared_logits = true: Llama's tied output projection does not divide the logits by √d_model; train with scale_shared_logits = false",
            _ => null,
        };
    }

    /// <summary>
    /// Writes <paramref name="model"/> as transformers would save the same Llama: config.json and model.safetensors
    /// (float32, Hugging Face's tensor names), into <paramref name="directory"/> (created if missing).
    /// </summary>
    /// <param name="model">A decoder-only model that is exactly a Llama (see <see cref="WhyNotLlama"/>).</param>
    /// <param name="directory">The output folder.</param>
    /// <param name="bosTokenId">The vocabulary's beginning-of-sequence id, if it has one.</param>
    /// <param name="eosTokenId">The vocabulary's end-of-sequence id, if it has one.</param>
    /// <exception cref="ArgumentException">The model is not exactly a Llama; the message names the option that differs.</exception>
    public static void Export(LanguageModel model, string directory, int? bosTokenId = null, int? eosTokenId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Options is not DecoderLmOptions o)
            throw new ArgumentException($"a {model.Options.Architecture} model is not a Llama: only decoder-only (decoder_lm) models export to LlamaForCausalLM");
        if (WhyNotLlama(o) is { } reason) throw new ArgumentException($"this model is not exactly a Hugging Face Llama: {reason}");
        if (model.TensorParallel.Parts > 1) throw new ArgumentException("this rank holds part of a tensor-parallel model: export from its checkpoint in one process");
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        var state = model.state_dict();
        var tensors = new SortedDictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (hf, loom) in KeyMap(o))
            tensors[hf] = state[loom].to(float32).contiguous();
        SafeTensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, ConfigFile), Config(o, bosTokenId, eosTokenId).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Reads a Hugging Face Llama or Mistral folder into a Loom decoder on <paramref name="device"/>, checking every
    /// tensor's name and shape.
    /// </summary>
    /// <exception cref="InvalidDataException">
    /// The architecture or a config option is not supported (the message names what is), or a tensor is missing, extra
    /// or of another shape (the message names it), or a file is missing or truncated.
    /// </exception>
    public static DecoderLm Import(string directory, Device? device = null)
    {
        var options = ReadOptions(directory);
        var model = new DecoderLm(options, device); // built outside the scope, which frees only what is read
        using var scope = NewDisposeScope();
        var weights = ReadWeights(directory);
        var state = model.state_dict();
        var map = KeyMap(options).ToList();
        foreach (var (hf, loom) in map)
        {
            if (!weights.TryGetValue(hf, out var tensor))
                throw new InvalidDataException($"{directory}: missing tensor '{hf}' (a {options.NumLayers}-layer Llama needs it)");
            var target = state[loom];
            if (!tensor.shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{directory}: tensor '{hf}' has shape [{string.Join(", ", tensor.shape)}], config.json implies [{string.Join(", ", target.shape)}]");
            using (no_grad()) target.copy_(tensor);
        }
        // Rotary tables are recomputed from config.json; anything else unmapped is a tensor this model would ignore.
        var extra = weights.Keys.Except(map.Select(m => m.Hf)).Where(k => !k.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)).ToList();
        if (extra.Count > 0)
            throw new InvalidDataException($"{directory}: unexpected tensors {string.Join(", ", extra.Take(3))}{(extra.Count > 3 ? ", …" : "")} (not part of a {options.NumLayers}-layer Llama)");
        return model;
    }

    /// <summary>Loom model options equal to a Hugging Face folder's config.json.</summary>
    /// <exception cref="InvalidDataException">The architecture or an option is not supported; the message names it.</exception>
    public static DecoderLmOptions ReadOptions(string directory)
    {
        string path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} is not a Hugging Face model folder: {ConfigFile} is missing");
        JsonObject config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})", e);
        }
        string architecture = (config["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>() ?? "(none)";
        if (!Architectures.Contains(architecture))
            throw new InvalidDataException($"{path}: architecture {architecture} is not supported: Loom imports {string.Join(", ", Architectures)}");
        int Int(string key) => config[key]?.GetValue<int>() ?? throw new InvalidDataException($"{path}: missing \"{key}\"");
        double Number(string key, double fallback) => config[key] is JsonValue v ? v.GetValue<double>() : fallback;
        bool Flag(string key) => config[key] is JsonValue v && v.GetValue<bool>();
        if (config["rope_scaling"] is JsonObject scaling)
            throw new InvalidDataException($"{path}: rope_scaling type {scaling["rope_type"] ?? scaling["type"]} is not supported yet: Loom imports unscaled rotary positions");
        if (Flag("attention_bias") || Flag("mlp_bias")) throw new InvalidDataException($"{path}: attention_bias or mlp_bias is set; Loom imports Llamas without biases");
        if (config["hidden_act"]?.GetValue<string>() is { } act && act != "silu")
            throw new InvalidDataException($"{path}: hidden_act = {act}: Llama's SwiGLU uses silu");
        if (config["sliding_window"] is JsonValue window && window.GetValue<int>() < Int("max_position_embeddings"))
            throw new InvalidDataException($"{path}: sliding_window = {window} is shorter than max_position_embeddings: Loom attends over the whole context");
        int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
        try
        {
            return new DecoderLmOptions
            {
                VocabSize = Int("vocab_size"),
                ModelDim = hidden,
                NumLayers = Int("num_hidden_layers"),
                NumHeads = heads,
                NumKvHeads = config["num_key_value_heads"]?.GetValue<int>() ?? heads,
                HeadDim = config["head_dim"] is JsonValue h && h.GetValueKind() == JsonValueKind.Number ? h.GetValue<int>() : hidden / heads,
                MlpDim = Int("intermediate_size"),
                MaxSequenceLength = Int("max_position_embeddings"),
                Activation = MlpActivation.SwiGlu,
                ParallelBlock = false,
                Positions = PositionEncoding.Rotary,
                RopeBase = Number("rope_theta", 10000),
                Norm = NormKind.RmsNorm,
                NormEpsilon = Number("rms_norm_eps", 1e-6),
                UseBias = false,
                SharedEmbeddings = Flag("tie_word_embeddings"),
                ScaleSharedLogits = false,
            }.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Hugging Face's tensor name → Loom's, for a Llama of <paramref name="o"/>'s shape.</summary>
    public static IEnumerable<(string Hf, string Loom)> KeyMap(DecoderLmOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        yield return ("model.embed_tokens.weight", "embed");
        for (int i = 0; i < o.NumLayers; i++)
        {
            string hf = $"model.layers.{i}.", loom = $"blocks.{i}.";
            yield return (hf + "input_layernorm.weight", loom + "norm.weight");
            yield return (hf + "self_attn.q_proj.weight", loom + "attn.wq.weight");
            yield return (hf + "self_attn.k_proj.weight", loom + "attn.wk.weight");
            yield return (hf + "self_attn.v_proj.weight", loom + "attn.wv.weight");
            yield return (hf + "self_attn.o_proj.weight", loom + "attn.wo.weight");
            yield return (hf + "post_attention_layernorm.weight", loom + "mlp_norm.weight");
            yield return (hf + "mlp.gate_proj.weight", loom + "mlp.gate.weight");
            yield return (hf + "mlp.up_proj.weight", loom + "mlp.up.weight");
            yield return (hf + "mlp.down_proj.weight", loom + "mlp.down.weight");
        }
        yield return ("model.norm.weight", "final_norm.weight");
        if (!o.SharedEmbeddings) yield return ("lm_head.weight", "lm_head.weight");
    }

    private static JsonObject Config(DecoderLmOptions o, int? bos, int? eos) => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = bos,
        ["eos_token_id"] = eos,
        ["head_dim"] = o.HeadDim,
        ["hidden_act"] = "silu",
        ["hidden_size"] = o.ModelDim,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = o.MlpDim,
        ["max_position_embeddings"] = o.MaxSequenceLength,
        ["mlp_bias"] = false,
        ["model_type"] = "llama",
        ["num_attention_heads"] = o.NumHeads,
        ["num_hidden_layers"] = o.NumLayers,
        ["num_key_value_heads"] = o.NumKvHeads,
        ["pretraining_tp"] = 1,
        ["rms_norm_eps"] = o.NormEpsilon,
        ["rope_scaling"] = null,
        ["rope_theta"] = o.RopeBase,
        ["tie_word_embeddings"] = o.SharedEmbeddings,
        ["torch_dtype"] = "float32",
        ["use_cache"] = true,
        ["vocab_size"] = o.VocabSize,
    };

    /// <summary>Every tensor of the folder's safetensors: one file, or the shards its index lists.</summary>
    private static Dictionary<string, Tensor> ReadWeights(string directory)
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
