using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's GPT-2 layout (<c>GPT2LMHeadModel</c>). A Loom decoder with serial blocks, LayerNorm and biases
/// everywhere, a GELU MLP, learned positions, multi-head attention whose heads fill d_model, and no mixture of experts
/// is exactly such a model. GPT-2's kernels are <c>Conv1D</c>s, stored (in, out), the transpose of Loom's (out, in)
/// kernels, and its query, key and value kernels are one fused <c>c_attn</c> (q | k | v along the output axis).
/// </summary>
public sealed class HuggingFaceGpt2 : IHuggingFaceArchitecture
{
    private HuggingFaceGpt2()
    {
    }

    /// <summary>The one instance.</summary>
    public static HuggingFaceGpt2 Instance { get; } = new();

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; } = ["GPT2LMHeadModel"];

    /// <inheritdoc />
    public string? WhyNot(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not DecoderLmOptions options)
            return $"model.architecture = {model.Architecture}: only decoder-only (decoder_lm) models are GPT-2s";
        return options switch
        {
            { ParallelBlock: true } => "model.parallel_block = true: GPT-2's blocks are serial",
            { Norm: not NormKind.LayerNorm } => $"model.norm = {options.Norm}: GPT-2 uses LayerNorm",
            { UseBias: false } => "model.use_bias = false: GPT-2's kernels and norms have biases",
            { Activation: not (MlpActivation.GeluTanh or MlpActivation.Gelu) } => $"model.activation = {options.Activation}: GPT-2's MLP is GELU (gelu_tanh, or gelu)",
            { Positions: not PositionEncoding.Learned } => $"model.positions = {options.Positions}: GPT-2 learns absolute positions",
            _ when options.NumKvHeads != options.NumHeads => $"model.num_kv_heads = {options.NumKvHeads}: GPT-2's attention is multi-head (num_kv_heads = num_heads = {options.NumHeads})",
            _ when options.NumHeads * options.HeadDim != options.ModelDim => $"model.head_dim = {options.HeadDim}: GPT-2's {options.NumHeads} heads split model_dim = {options.ModelDim} evenly (head_dim = model_dim / num_heads)",
            { Moe: not null } => "model.moe: GPT-2 has dense MLPs",
            { SharedEmbeddings: true, ScaleSharedLogits: true } => "model.shared_embeddings with model.scale_shared_logits = true: GPT-2's tied output projection does not divide the logits by √d_model; train with scale_shared_logits = false",
            _ => HuggingFaceLlama.WhyNotPlainDecoder(options, "GPT-2"),
        };
    }

    /// <inheritdoc />
    public ModelOptions ReadOptions(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var activation = config.String("activation_function") switch
        {
            null or "gelu_new" or "gelu_pytorch_tanh" => MlpActivation.GeluTanh, // the same function; transformers' default is gelu_new
            "gelu" => MlpActivation.Gelu,
            var other => throw config.Error($"activation_function = {other}: Loom's GPT-2 MLP is gelu_new (tanh-approximated GELU) or gelu"),
        };
        if (!config.Flag("scale_attn_weights", true)) throw config.Error("scale_attn_weights = false: Loom always scales attention scores by 1/√head_dim");
        if (config.Flag("scale_attn_by_inverse_layer_idx")) throw config.Error("scale_attn_by_inverse_layer_idx = true: Loom does not scale attention scores by layer");
        if (config.Flag("add_cross_attention")) throw config.Error("add_cross_attention = true: Loom imports decoder-only GPT-2s");
        int hidden = config.Int("n_embd"), heads = config.Int("n_head");
        if (heads <= 0 || hidden % heads != 0) throw config.Error($"n_embd = {hidden} is not a multiple of n_head = {heads}");
        try
        {
            return new DecoderLmOptions
            {
                VocabSize = config.Int("vocab_size"),
                ModelDim = hidden,
                NumLayers = config.Int("n_layer"),
                NumHeads = heads,
                NumKvHeads = heads,
                HeadDim = hidden / heads,
                MlpDim = config.OptionalInt("n_inner") ?? 4 * hidden,
                MaxSequenceLength = config.Int("n_positions"),
                Activation = activation,
                ParallelBlock = false,
                Positions = PositionEncoding.Learned,
                Norm = NormKind.LayerNorm,
                NormEpsilon = config.Number("layer_norm_epsilon", 1e-5),
                UseBias = true,
                SharedEmbeddings = config.Flag("tie_word_embeddings", true), // transformers omits it when true, the default
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
            ["activation_function"] = o.Activation == MlpActivation.Gelu ? "gelu" : "gelu_new",
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["attn_pdrop"] = 0.0, // Loom trains without dropout
            ["bos_token_id"] = bosTokenId,
            ["embd_pdrop"] = 0.0,
            ["eos_token_id"] = eosTokenId,
            ["initializer_range"] = 0.02,
            ["layer_norm_epsilon"] = o.NormEpsilon,
            ["model_type"] = "gpt2",
            ["n_embd"] = o.ModelDim,
            ["n_head"] = o.NumHeads,
            ["n_inner"] = o.MlpDim == 4 * o.ModelDim ? null : o.MlpDim,
            ["n_layer"] = o.NumLayers,
            ["n_positions"] = o.MaxSequenceLength,
            ["reorder_and_upcast_attn"] = false,
            ["resid_pdrop"] = 0.0,
            ["scale_attn_by_inverse_layer_idx"] = false,
            ["scale_attn_weights"] = true,
            ["summary_activation"] = null,
            ["summary_first_dropout"] = 0.1,
            ["summary_proj_to_labels"] = true,
            ["summary_type"] = "cls_index",
            ["summary_use_proj"] = true,
            ["tie_word_embeddings"] = o.SharedEmbeddings,
            ["torch_dtype"] = "float32",
            ["use_cache"] = true,
            ["vocab_size"] = o.VocabSize,
        };
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var o = (DecoderLmOptions)model;
        var hf = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["transformer.wte.weight"] = state["embed"],
            ["transformer.wpe.weight"] = state["pos_embed"],
            ["transformer.ln_f.weight"] = state["final_norm.weight"],
            ["transformer.ln_f.bias"] = state["final_norm.bias"],
        };
        for (int i = 0; i < o.NumLayers; i++)
        {
            string h = $"transformer.h.{i}.", b = $"blocks.{i}.";
            hf[h + "ln_1.weight"] = state[b + "norm.weight"];
            hf[h + "ln_1.bias"] = state[b + "norm.bias"];
            // Conv1D kernels are (in, out): Loom's (out, in) transposed; c_attn is q | k | v along out.
            hf[h + "attn.c_attn.weight"] = cat([state[b + "attn.wq.weight"], state[b + "attn.wk.weight"], state[b + "attn.wv.weight"]], 0).t(); // (D, 3D)
            hf[h + "attn.c_attn.bias"] = cat([state[b + "attn.wq.bias"], state[b + "attn.wk.bias"], state[b + "attn.wv.bias"]], 0);             // (3D)
            hf[h + "attn.c_proj.weight"] = state[b + "attn.wo.weight"].t();  // (D, D)
            hf[h + "attn.c_proj.bias"] = state[b + "attn.wo.bias"];
            hf[h + "ln_2.weight"] = state[b + "mlp_norm.weight"];
            hf[h + "ln_2.bias"] = state[b + "mlp_norm.bias"];
            hf[h + "mlp.c_fc.weight"] = state[b + "mlp.up.weight"].t();      // (D, F)
            hf[h + "mlp.c_fc.bias"] = state[b + "mlp.up.bias"];
            hf[h + "mlp.c_proj.weight"] = state[b + "mlp.down.weight"].t();  // (F, D)
            hf[h + "mlp.c_proj.bias"] = state[b + "mlp.down.bias"];
        }
        if (!o.SharedEmbeddings) hf["lm_head.weight"] = state["lm_head.weight"];
        return hf;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Takes the names <c>save_pretrained</c> writes (<c>transformer.h.N…</c>) or, as OpenAI's original checkpoints on the
    /// Hub have them, the base model's (<c>h.N…</c>); the causal-mask buffers older checkpoints hold (<c>attn.bias</c>,
    /// <c>attn.masked_bias</c>) are ignored; with tied embeddings an <c>lm_head.weight</c> equal to the embedding is accepted.
    /// </remarks>
    public IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var o = (DecoderLmOptions)model;
        long d = o.ModelDim, f = o.MlpDim;
        string p = !tensors.Contains("transformer.wte.weight") && tensors.Contains("wte.weight") ? "" : "transformer.";
        var loom = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["embed"] = tensors.Take(p + "wte.weight", o.VocabSize, d),
            ["pos_embed"] = tensors.Take(p + "wpe.weight", o.MaxSequenceLength, d),
            ["final_norm.weight"] = tensors.Take(p + "ln_f.weight", d),
            ["final_norm.bias"] = tensors.Take(p + "ln_f.bias", d),
        };
        for (int i = 0; i < o.NumLayers; i++)
        {
            string h = $"{p}h.{i}.", b = $"blocks.{i}.";
            tensors.Ignore(name => name == h + "attn.bias" || name == h + "attn.masked_bias"); // causal-mask buffers
            loom[b + "norm.weight"] = tensors.Take(h + "ln_1.weight", d);
            loom[b + "norm.bias"] = tensors.Take(h + "ln_1.bias", d);
            var qkv = tensors.Take(h + "attn.c_attn.weight", d, 3 * d).t(); // (3D, D): q, k, v stacked by rows
            var qkvBias = tensors.Take(h + "attn.c_attn.bias", 3 * d);
            foreach (var (name, part) in new[] { ("wq", 0L), ("wk", 1L), ("wv", 2L) })
            {
                loom[$"{b}attn.{name}.weight"] = qkv.narrow(0, part * d, d);  // (D, D)
                loom[$"{b}attn.{name}.bias"] = qkvBias.narrow(0, part * d, d); // (D)
            }
            loom[b + "attn.wo.weight"] = tensors.Take(h + "attn.c_proj.weight", d, d).t();
            loom[b + "attn.wo.bias"] = tensors.Take(h + "attn.c_proj.bias", d);
            loom[b + "mlp_norm.weight"] = tensors.Take(h + "ln_2.weight", d);
            loom[b + "mlp_norm.bias"] = tensors.Take(h + "ln_2.bias", d);
            loom[b + "mlp.up.weight"] = tensors.Take(h + "mlp.c_fc.weight", d, f).t();   // (F, D)
            loom[b + "mlp.up.bias"] = tensors.Take(h + "mlp.c_fc.bias", f);
            loom[b + "mlp.down.weight"] = tensors.Take(h + "mlp.c_proj.weight", f, d).t(); // (D, F)
            loom[b + "mlp.down.bias"] = tensors.Take(h + "mlp.c_proj.bias", d);
        }
        if (!o.SharedEmbeddings) loom["lm_head.weight"] = tensors.Take("lm_head.weight", o.VocabSize, d);
        else if (tensors.Contains("lm_head.weight") && !tensors.Take("lm_head.weight", o.VocabSize, d).equal(loom["embed"]).all().item<bool>())
            throw new InvalidDataException($"{tensors.Source}: tensor 'lm_head.weight' differs from '{p}wte.weight', but config.json ties them (tie_word_embeddings)");
        return loom;
    }
}
