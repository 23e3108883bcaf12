using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's Gemma layouts: <c>GemmaForCausalLM</c> (<see cref="Gemma"/>) and <c>Gemma2ForCausalLM</c>
/// (<see cref="Gemma2"/>). Gemma is a Llama-shaped decoder (serial blocks, RMSNorm, rotary positions, no biases) with
/// GeGLU (tanh GELU), token embeddings scaled by √d_model, RMSNorms that scale by 1 + w, and usually tied embeddings;
/// Loom has each as an option (<see cref="DecoderLmOptions.ScaleEmbeddings"/>, <see cref="DecoderLmOptions.NormUnitOffset"/>).
/// Gemma 2 adds norms on each sublayer's output (<see cref="DecoderLmOptions.PostNorms"/>), a query scale
/// (<see cref="DecoderLmOptions.QueryPreAttnScalar"/>) and soft caps on attention scores and logits.
/// </summary>
/// <remarks>
/// Gemma 2 attends within a sliding window on every other layer. Loom attends over the whole context, which is the same
/// computation while the context is no longer than the window: a Gemma 2 whose window is shorter than its
/// max_position_embeddings imports with model.max_sequence_length cut to the window, and Loom writes sliding_window
/// equal to max_position_embeddings.
/// </remarks>
public sealed class HuggingFaceGemma : IHuggingFaceArchitecture
{
    private readonly bool gemma2;
    private readonly string name;

    private HuggingFaceGemma(bool gemma2)
    {
        this.gemma2 = gemma2;
        name = gemma2 ? "Gemma 2" : "Gemma";
        Names = [gemma2 ? "Gemma2ForCausalLM" : "GemmaForCausalLM"];
    }

    /// <summary>Gemma (<c>GemmaForCausalLM</c>, model_type gemma).</summary>
    public static HuggingFaceGemma Gemma { get; } = new(gemma2: false);

    /// <summary>Gemma 2 (<c>Gemma2ForCausalLM</c>, model_type gemma2).</summary>
    public static HuggingFaceGemma Gemma2 { get; } = new(gemma2: true);

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; }

    /// <inheritdoc />
    public string? WhyNot(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not DecoderLmOptions options)
            return $"model.architecture = {model.Architecture}: only decoder-only (decoder_lm) models are {name}s";
        return options switch
        {
            { ParallelBlock: true } => $"model.parallel_block = true: {name}'s blocks are serial",
            { Norm: not NormKind.RmsNorm } => $"model.norm = {options.Norm}: {name} uses RMSNorm",
            { NormUnitOffset: false } => $"model.norm_unit_offset = false: {name}'s RMSNorms scale by 1 + w",
            { ScaleEmbeddings: false } => $"model.scale_embeddings = false: {name} multiplies its embeddings by √d_model",
            { Activation: not MlpActivation.GeGlu } => $"model.activation = {options.Activation}: {name}'s MLP is GeGLU",
            { Positions: not PositionEncoding.Rotary } => $"model.positions = {options.Positions}: {name} uses rotary positions",
            { RopeScaling: not null } => $"model.rope_scaling is set: {name}'s config has no rotary scaling",
            { UseBias: true } => $"model.use_bias = true: {name}'s kernels have no biases",
            { Moe: not null } => $"model.moe: {name} has dense MLPs",
            { SharedEmbeddings: true, ScaleSharedLogits: true } => $"model.shared_embeddings with model.scale_shared_logits = true: {name}'s tied output projection does not divide the logits by √d_model; train with scale_shared_logits = false",
            { PostNorms: true } when !gemma2 => "model.post_norms = true: Gemma has no norms on the sublayers' outputs (Gemma 2 does)",
            { QueryPreAttnScalar: { } s } when !gemma2 => $"model.query_pre_attn_scalar = {s}: Gemma scales attention scores by 1/√head_dim (Gemma 2 sets the scale)",
            { AttentionLogitSoftcap: { } c } when !gemma2 => $"model.attention_logit_softcap = {c}: Gemma does not cap attention scores (Gemma 2 does)",
            { FinalLogitSoftcap: { } c } when !gemma2 => $"model.final_logit_softcap = {c}: Gemma does not cap its logits (Gemma 2 does)",
            { PostNorms: false } when gemma2 => "model.post_norms = false: Gemma 2 norms each sublayer's output",
            { QueryPreAttnScalar: null } when gemma2 => $"model.query_pre_attn_scalar is null: Gemma 2's config sets the attention scale (set it to head_dim = {options.HeadDim} for 1/√head_dim)",
            _ => null,
        };
    }

    /// <inheritdoc />
    public ModelOptions ReadOptions(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        // transformers' Gemma MLP reads hidden_activation (hidden_act is ignored), tanh GELU when it is null.
        if (config.String("hidden_activation") is { } act && act is not ("gelu_pytorch_tanh" or "gelu_new"))
            throw config.Error($"hidden_activation = {act}: Loom's GeGLU is gelu_pytorch_tanh (tanh-approximated GELU)");
        if (config.Flag("attention_bias")) throw config.Error($"attention_bias = true: Loom imports {name}s without biases");
        if (config.Json["rope_scaling"] is JsonObject) throw config.Error($"rope_scaling is set: Loom imports {name}s with unscaled rotary positions");
        if (config.Flag("use_bidirectional_attention")) throw config.Error("use_bidirectional_attention = true: Loom's decoder attends causally");
        int hidden = config.Int("hidden_size"), heads = config.Int("num_attention_heads"), context = config.Int("max_position_embeddings");
        // A key that is absent takes Gemma2Config's default; one that is null switches the feature off.
        double? Gemma2Number(string key, double fallback) => config.Json.ContainsKey(key) ? config.OptionalNumber(key) : fallback;
        if (gemma2 && Gemma2Number("sliding_window", 4096) is { } window && window < context) context = (int)window; // see the remarks
        try
        {
            return new DecoderLmOptions
            {
                VocabSize = config.Int("vocab_size"),
                ModelDim = hidden,
                NumLayers = config.Int("num_hidden_layers"),
                NumHeads = heads,
                // Required: Gemma's configs default them to a released model's values, not to heads and hidden / heads.
                NumKvHeads = config.Int("num_key_value_heads"),
                HeadDim = config.Int("head_dim"),
                MlpDim = config.Int("intermediate_size"),
                MaxSequenceLength = context,
                Activation = MlpActivation.GeGlu,
                ParallelBlock = false,
                Positions = PositionEncoding.Rotary,
                RopeBase = config.Number("rope_theta", 10000),
                Norm = NormKind.RmsNorm,
                NormEpsilon = config.Number("rms_norm_eps", 1e-6),
                UseBias = false,
                SharedEmbeddings = config.Flag("tie_word_embeddings", true), // transformers omits it when true, the default
                ScaleSharedLogits = false,
                ScaleEmbeddings = true,
                NormUnitOffset = true,
                PostNorms = gemma2,
                QueryPreAttnScalar = gemma2 ? config.OptionalNumber("query_pre_attn_scalar") ?? throw config.Error("missing \"query_pre_attn_scalar\"") : null,
                AttentionLogitSoftcap = gemma2 ? Gemma2Number("attn_logit_softcapping", 50) : null,
                FinalLogitSoftcap = gemma2 ? Gemma2Number("final_logit_softcapping", 30) : null,
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
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(Names[0]),
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
        };
        if (gemma2) config["attn_logit_softcapping"] = o.AttentionLogitSoftcap;
        config["bos_token_id"] = bosTokenId;
        if (gemma2) config["cache_implementation"] = "hybrid";
        config["eos_token_id"] = eosTokenId;
        if (gemma2) config["final_logit_softcapping"] = o.FinalLogitSoftcap;
        config["head_dim"] = o.HeadDim;
        config["hidden_act"] = "gelu_pytorch_tanh";
        config["hidden_activation"] = "gelu_pytorch_tanh";
        config["hidden_size"] = o.ModelDim;
        config["initializer_range"] = 0.02;
        config["intermediate_size"] = o.MlpDim;
        config["max_position_embeddings"] = o.MaxSequenceLength;
        config["model_type"] = gemma2 ? "gemma2" : "gemma";
        config["num_attention_heads"] = o.NumHeads;
        config["num_hidden_layers"] = o.NumLayers;
        config["num_key_value_heads"] = o.NumKvHeads;
        config["pad_token_id"] = null; // Loom's options do not name one
        if (gemma2) config["query_pre_attn_scalar"] = o.QueryPreAttnScalar;
        config["rms_norm_eps"] = o.NormEpsilon;
        config["rope_theta"] = o.RopeBase;
        if (gemma2) config["sliding_window"] = o.MaxSequenceLength; // Loom attends over the whole context
        config["tie_word_embeddings"] = o.SharedEmbeddings;
        config["torch_dtype"] = "float32";
        config["use_cache"] = true;
        config["vocab_size"] = o.VocabSize;
        return config;
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return HuggingFaceTensors.Rename(KeyMap((DecoderLmOptions)model), state);
    }

    /// <inheritdoc />
    /// <remarks>With tied embeddings an <c>lm_head.weight</c> equal to the embedding is accepted.</remarks>
    public IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var o = (DecoderLmOptions)model;
        tensors.Ignore(n => n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)); // recomputed from config.json
        var loom = tensors.TakeAll(KeyMap(o));
        if (o.SharedEmbeddings && tensors.Contains("lm_head.weight")
            && !tensors.Take("lm_head.weight", o.VocabSize, o.ModelDim).equal(loom["embed"]).all().item<bool>())
            throw new InvalidDataException($"{tensors.Source}: tensor 'lm_head.weight' differs from 'model.embed_tokens.weight', but config.json ties them (tie_word_embeddings)");
        return loom;
    }

    /// <summary>Hugging Face's tensor name, Loom's, and the shape both have, for a Gemma (or Gemma 2) of <paramref name="o"/>'s shape.</summary>
    public IEnumerable<(string Hf, string Loom, long[] Shape)> KeyMap(DecoderLmOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (!gemma2)
        {
            // Gemma's tensors are Llama's: its differences are in the computation, not the names.
            foreach (var entry in HuggingFaceLlama.KeyMap(o)) yield return entry;
            yield break;
        }
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
            // Gemma 2's post_attention_layernorm norms the attention's output; the MLP's input norm is pre_feedforward.
            yield return (hf + "post_attention_layernorm.weight", loom + "post_attn_norm.weight", [d]);
            yield return (hf + "pre_feedforward_layernorm.weight", loom + "mlp_norm.weight", [d]);
            yield return (hf + "post_feedforward_layernorm.weight", loom + "post_mlp_norm.weight", [d]);
            yield return (hf + "mlp.gate_proj.weight", loom + "mlp.gate.weight", [o.MlpDim, d]);
            yield return (hf + "mlp.up_proj.weight", loom + "mlp.up.weight", [o.MlpDim, d]);
            yield return (hf + "mlp.down_proj.weight", loom + "mlp.down.weight", [d, o.MlpDim]);
        }
        yield return ("model.norm.weight", "final_norm.weight", [d]);
        if (!o.SharedEmbeddings) yield return ("lm_head.weight", "lm_head.weight", [o.VocabSize, d]);
    }
}
