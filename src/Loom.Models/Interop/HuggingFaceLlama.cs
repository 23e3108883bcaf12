using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's Llama layout (<c>LlamaForCausalLM</c>, and <c>MistralForCausalLM</c>, which stores the same tensors).
/// A Loom decoder with serial blocks, RMSNorm, SwiGLU, rotary positions (Loom rotates the two halves of each head, as
/// transformers does, so the query and key kernels need no permutation), no biases and no mixture of experts is
/// exactly such a model.
/// </summary>
public sealed class HuggingFaceLlama : IHuggingFaceArchitecture
{
    private HuggingFaceLlama()
    {
    }

    /// <summary>The one instance.</summary>
    public static HuggingFaceLlama Instance { get; } = new();

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; } = ["LlamaForCausalLM", "MistralForCausalLM"];

    /// <inheritdoc />
    public string? WhyNot(ModelOptions model)
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
            { Moe: not null } => "model.moe: a decoder with a mixture of experts is a MixtralForCausalLM, not a Llama",
            { SharedEmbeddings: true, ScaleSharedLogits: true } => "model.shared_embeddings with model.scale_shared_logits = true: Llama's tied output projection does not divide the logits by √d_model; train with scale_shared_logits = false",
            { RopeScaling: { Type: RopeScalingType.Yarn, OriginalMaxPositionEmbeddings: { } original } yarn } when original != options.MaxSequenceLength && yarn.Factor != (double)options.MaxSequenceLength / original =>
                $"model.rope_scaling.factor = {yarn.Factor}: with original_max_position_embeddings = {original} transformers' yarn uses max_position_embeddings / original = {options.MaxSequenceLength}/{original} as the factor",
            _ => WhyNotPlainDecoder(options, "Llama"),
        };
    }

    /// <summary>
    /// The first of Gemma's options (see <see cref="HuggingFaceGemma"/>) that <paramref name="options"/> sets, which a
    /// Llama or a GPT-2 (<paramref name="architecture"/>) does not have; null when none is set.
    /// </summary>
    internal static string? WhyNotPlainDecoder(DecoderLmOptions options, string architecture) => options switch
    {
        { ScaleEmbeddings: true } => $"model.scale_embeddings = true: {architecture} does not scale its embeddings (Gemma does)",
        { NormUnitOffset: true } => $"model.norm_unit_offset = true: {architecture}'s norms scale by w, not 1 + w (Gemma's do)",
        { PostNorms: true } => $"model.post_norms = true: {architecture} has no norms on the sublayers' outputs (Gemma 2 does)",
        { QueryPreAttnScalar: { } s } => $"model.query_pre_attn_scalar = {s}: {architecture} scales attention scores by 1/√head_dim (Gemma 2 sets the scale)",
        { AttentionLogitSoftcap: { } c } => $"model.attention_logit_softcap = {c}: {architecture} does not cap attention scores (Gemma 2 does)",
        { FinalLogitSoftcap: { } c } => $"model.final_logit_softcap = {c}: {architecture} does not cap its logits (Gemma 2 does)",
        _ => null,
    };

    /// <inheritdoc />
    public ModelOptions ReadOptions(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var ropeScaling = ReadRopeScaling(config);
        if (config.Flag("attention_bias") || config.Flag("mlp_bias")) throw config.Error("attention_bias or mlp_bias is set; Loom imports Llamas without biases");
        if (config.String("hidden_act") is { } act && act != "silu")
            throw config.Error($"hidden_act = {act}: Llama's SwiGLU uses silu");
        if (config.OptionalInt("sliding_window") is { } window && window < config.Int("max_position_embeddings"))
            throw config.Error($"sliding_window = {window} is shorter than max_position_embeddings: Loom attends over the whole context");
        int hidden = config.Int("hidden_size"), heads = config.Int("num_attention_heads");
        try
        {
            return new DecoderLmOptions
            {
                VocabSize = config.Int("vocab_size"),
                ModelDim = hidden,
                NumLayers = config.Int("num_hidden_layers"),
                NumHeads = heads,
                NumKvHeads = config.OptionalInt("num_key_value_heads") ?? heads,
                HeadDim = config.OptionalInt("head_dim") ?? hidden / heads,
                MlpDim = config.Int("intermediate_size"),
                MaxSequenceLength = config.Int("max_position_embeddings"),
                Activation = MlpActivation.SwiGlu,
                ParallelBlock = false,
                Positions = PositionEncoding.Rotary,
                RopeBase = config.Number("rope_theta", 10000),
                RopeScaling = ropeScaling,
                Norm = NormKind.RmsNorm,
                NormEpsilon = config.Number("rms_norm_eps", 1e-6),
                UseBias = false,
                SharedEmbeddings = config.Flag("tie_word_embeddings"),
                ScaleSharedLogits = false,
            }.Validate();
        }
        catch (ArgumentException e)
        {
            throw config.Error(e.Message);
        }
    }

    /// <inheritdoc />
    public JsonObject WriteConfig(ModelOptions model, int? bosTokenId, int? eosTokenId)
    {
        var o = (DecoderLmOptions)model;
        return new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = bosTokenId,
            ["eos_token_id"] = eosTokenId,
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
            ["rope_scaling"] = WriteRopeScaling(o.RopeScaling, o.MaxSequenceLength),
            ["rope_theta"] = o.RopeBase,
            ["tie_word_embeddings"] = o.SharedEmbeddings,
            ["torch_dtype"] = "float32",
            ["use_cache"] = true,
            ["vocab_size"] = o.VocabSize,
        };
    }

    /// <summary>
    /// config.json's <c>rope_scaling</c> as Loom's option: null, absent or type "default" is none; "linear", "llama3",
    /// "ntk" and "yarn" (under <c>rope_type</c>, or the older <c>type</c>) are read; any other type is refused naming it.
    /// YaRN's original context is its <c>original_max_position_embeddings</c>, and then, as transformers computes it, its
    /// factor max_position_embeddings / original; without one, max_position_embeddings and the given factor.
    /// </summary>
    /// <exception cref="InvalidDataException">An unsupported type, or a missing or invalid field; the message names it.</exception>
    public static RopeScaling? ReadRopeScaling(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Json["rope_scaling"] is not JsonObject scaling) return null;
        var fields = new HuggingFaceConfig(scaling, config.Path + " rope_scaling");
        string? type = fields.String("rope_type") ?? fields.String("type");
        double Factor() => fields.OptionalNumber("factor") ?? throw config.Error($"rope_scaling of type {type} has no \"factor\"");
        try
        {
            return type switch
            {
                null or "default" => null,
                "linear" => new RopeScaling { Type = RopeScalingType.Linear, Factor = Factor() }.Validate(),
                "llama3" => new RopeScaling
                {
                    Type = RopeScalingType.Llama3,
                    Factor = Factor(),
                    LowFreqFactor = fields.OptionalNumber("low_freq_factor") ?? throw config.Error("rope_scaling of type llama3 has no \"low_freq_factor\""),
                    HighFreqFactor = fields.OptionalNumber("high_freq_factor") ?? throw config.Error("rope_scaling of type llama3 has no \"high_freq_factor\""),
                    OriginalMaxPositionEmbeddings = fields.OptionalInt("original_max_position_embeddings") ?? throw config.Error("rope_scaling of type llama3 has no \"original_max_position_embeddings\""),
                }.Validate(),
                "ntk" => new RopeScaling { Type = RopeScalingType.Ntk, Factor = Factor() }.Validate(),
                "yarn" => ReadYarn(config, fields, Factor),
                _ => throw config.Error($"rope_scaling type {type} is not supported: Loom reads linear, llama3, ntk and yarn scaling"),
            };
        }
        catch (ArgumentException e)
        {
            throw config.Error(e.Message);
        }
    }

    private static RopeScaling ReadYarn(HuggingFaceConfig config, HuggingFaceConfig fields, Func<double> factor)
    {
        int maxPositions = config.Int("max_position_embeddings");
        int? original = fields.OptionalInt("original_max_position_embeddings");
        // transformers reads `x or default` for the betas: 0 means the default too.
        double? Beta(string key) => fields.OptionalNumber(key) is { } b && b != 0 ? b : null;
        return new RopeScaling
        {
            Type = RopeScalingType.Yarn,
            Factor = original is { } o ? (double)maxPositions / o : factor(),
            OriginalMaxPositionEmbeddings = original ?? maxPositions,
            BetaFast = Beta("beta_fast"),
            BetaSlow = Beta("beta_slow"),
            AttentionFactor = fields.OptionalNumber("attention_factor"),
            Mscale = fields.OptionalNumber("mscale"),
            MscaleAllDim = fields.OptionalNumber("mscale_all_dim"),
            Truncate = fields.Json["truncate"] is JsonValue t && t.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? t.GetValue<bool>() : null,
        }.Validate();
    }

    /// <summary>
    /// Loom's rotary scaling as config.json's <c>rope_scaling</c> object (null for none), as transformers writes it; a YaRN
    /// original context equal to <paramref name="maxPositionEmbeddings"/> is left out (transformers' default for it).
    /// </summary>
    public static JsonObject? WriteRopeScaling(RopeScaling? scaling, int maxPositionEmbeddings) => scaling switch
    {
        null => null,
        { Type: RopeScalingType.Ntk } => new JsonObject { ["factor"] = scaling.Factor, ["rope_type"] = "ntk" },
        { Type: RopeScalingType.Yarn } => WriteYarn(scaling, maxPositionEmbeddings),
        { Type: RopeScalingType.Llama3 } => new JsonObject
        {
            ["factor"] = scaling.Factor,
            ["high_freq_factor"] = scaling.HighFreqFactor,
            ["low_freq_factor"] = scaling.LowFreqFactor,
            ["original_max_position_embeddings"] = scaling.OriginalMaxPositionEmbeddings,
            ["rope_type"] = "llama3",
        },
        _ => new JsonObject { ["factor"] = scaling.Factor, ["rope_type"] = "linear" },
    };

    private static JsonObject WriteYarn(RopeScaling yarn, int maxPositionEmbeddings)
    {
        var json = new JsonObject { ["factor"] = yarn.Factor };
        void Optional(string key, JsonNode? value)
        {
            if (value is not null) json[key] = value;
        }
        Optional("attention_factor", yarn.AttentionFactor);
        Optional("beta_fast", yarn.BetaFast);
        Optional("beta_slow", yarn.BetaSlow);
        Optional("mscale", yarn.Mscale);
        Optional("mscale_all_dim", yarn.MscaleAllDim);
        if (yarn.OriginalMaxPositionEmbeddings != maxPositionEmbeddings) json["original_max_position_embeddings"] = yarn.OriginalMaxPositionEmbeddings;
        json["rope_type"] = "yarn";
        Optional("truncate", yarn.Truncate);
        return json;
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return HuggingFaceTensors.Rename(KeyMap((DecoderLmOptions)model), state);
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var o = (DecoderLmOptions)model;
        tensors.Ignore(name => name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)); // recomputed from config.json
        return tensors.TakeAll(KeyMap(o));
    }

    /// <summary>Hugging Face's tensor name, Loom's, and the shape both have, for a Llama of <paramref name="o"/>'s shape.</summary>
    public static IEnumerable<(string Hf, string Loom, long[] Shape)> KeyMap(DecoderLmOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        long d = o.ModelDim, q = o.NumHeads * o.HeadDim, kv = o.NumKvHeads * o.HeadDim;
        yield return ("model.embed_tokens.weight", "embed", [o.VocabSize, d]);
        for (int i = 0; i < o.NumLayers; i++)
        {
            string hf = $"model.layers.{i}.", loom = $"blocks.{i}.";
            yield return (hf + "input_layernorm.weight", loom + "norm.weight", [d]);
            yield return (hf + "self_attn.q_proj.weight", loom + "attn.wq.weight", [q, d]);
            yield return (hf + "self_attn.k_proj.weight", loom + "attn.wk.weight", [kv, d]);
            yield return (hf + "self_attn.v_proj.weight", loom + "attn.wv.weight", [kv, d]);
            yield return (hf + "self_attn.o_proj.weight", loom + "attn.wo.weight", [d, q]);
            yield return (hf + "post_attention_layernorm.weight", loom + "mlp_norm.weight", [d]);
            yield return (hf + "mlp.gate_proj.weight", loom + "mlp.gate.weight", [o.MlpDim, d]);
            yield return (hf + "mlp.up_proj.weight", loom + "mlp.up.weight", [o.MlpDim, d]);
            yield return (hf + "mlp.down_proj.weight", loom + "mlp.down.weight", [d, o.MlpDim]);
        }
        yield return ("model.norm.weight", "final_norm.weight", [d]);
        if (!o.SharedEmbeddings) yield return ("lm_head.weight", "lm_head.weight", [o.VocabSize, d]);
    }
}
