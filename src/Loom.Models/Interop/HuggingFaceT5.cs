using System.Text.Json.Nodes;
using Loom.Models.T5;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's T5 layout (<c>T5ForConditionalGeneration</c>) for T5 v1.1: <c>feed_forward_proj = "gated-gelu"</c>
/// (transformers runs it with <c>gelu_new</c>, the tanh approximation, as Loom's T5 does) and an untied output layer.
/// Loom's T5 computes what transformers' does: unscaled attention logits (the 1/√d_kv is folded into the query
/// kernel), one relative position bias table per stack held by its first block, bucketed as
/// <c>_relative_position_bucket</c> does (bidirectional in the encoder, causal in the decoder), none in
/// cross-attention, RMSNorm without a mean or bias, and one input embedding for both stacks.
/// </summary>
/// <remarks>
/// transformers ties <c>encoder.embed_tokens.weight</c> and <c>decoder.embed_tokens.weight</c> to
/// <c>shared.weight</c> and its safetensors files keep only <c>shared.weight</c>; a folder that holds the aliases
/// too imports when they equal it. <c>decoder_start_token_id</c> is a generation setting (Loom's feature converters
/// and decoders start from the pad id, 0): an export writes 0 and an import does not read it.
/// </remarks>
public sealed class HuggingFaceT5 : IHuggingFaceArchitecture
{
    // The aliases of shared.weight that transformers' T5 ties to it.
    private static readonly string[] EmbeddingAliases = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];

    // feed_forward_proj values whose hidden activation is gated GELU with the tanh approximation.
    private static readonly string[] GatedTanhGelu = ["gated-gelu", "gated-gelu_new", "gated-gelu_pytorch_tanh"];

    private HuggingFaceT5()
    {
    }

    /// <summary>The one instance.</summary>
    public static HuggingFaceT5 Instance { get; } = new();

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; } = ["T5ForConditionalGeneration"];

    /// <inheritdoc />
    public string? WhyNot(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not T5Options options)
            return $"model.architecture = {model.Architecture}: only encoder-decoder (t5) models are T5s";
        if (options.Moe is not null)
            return "model.moe: a T5 with a mixture of experts is a Switch Transformer (SwitchTransformersForConditionalGeneration), which this Loom does not write";
        return null;
    }

    /// <inheritdoc />
    public ModelOptions ReadOptions(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        // T5Config's defaults are the original T5's (relu, tied embeddings), so an absent field is read as transformers reads it.
        string projection = config.String("feed_forward_proj") ?? "relu";
        if (!GatedTanhGelu.Contains(projection))
            throw config.Error($"feed_forward_proj = {projection}: Loom's T5 is T5 v1.1, whose MLP is gated-gelu (the original T5's relu MLP is not supported)");
        if (config.Flag("tie_word_embeddings", true))
            throw config.Error("tie_word_embeddings = true: the original T5 ties its output layer to the embedding and scales the logits by d_model^-0.5; Loom's T5 is T5 v1.1, with tie_word_embeddings = false");
        if (!config.Flag("is_encoder_decoder", true))
            throw config.Error("is_encoder_decoder = false: Loom imports T5ForConditionalGeneration as an encoder-decoder");
        int layers = config.Int("num_layers");
        try
        {
            return new T5Options
            {
                VocabSize = config.OptionalInt("vocab_size") ?? 32128,
                ModelDim = config.Int("d_model"),
                NumEncoderLayers = layers,
                NumDecoderLayers = config.OptionalInt("num_decoder_layers") ?? layers,
                NumHeads = config.Int("num_heads"),
                HeadDim = config.Int("d_kv"),
                MlpDim = config.Int("d_ff"),
                RelativeAttentionNumBuckets = config.OptionalInt("relative_attention_num_buckets") ?? 32,
                RelativeAttentionMaxDistance = config.OptionalInt("relative_attention_max_distance") ?? 128,
                DropoutRate = config.Number("dropout_rate", 0.1),
                NormEpsilon = config.Number("layer_norm_epsilon", 1e-6),
                // Relative positions set no length limit; T5 v1.1's configs give n_positions = 512, the length it was trained at.
                MaxSequenceLength = config.OptionalInt("n_positions") ?? 512,
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
        var o = (T5Options)model;
        return new JsonObject
        {
            ["architectures"] = new JsonArray("T5ForConditionalGeneration"),
            ["classifier_dropout"] = 0.0,
            ["d_ff"] = o.MlpDim,
            ["d_kv"] = o.HeadDim,
            ["d_model"] = o.ModelDim,
            ["decoder_start_token_id"] = 0,
            ["dense_act_fn"] = "gelu_new",
            ["dropout_rate"] = o.DropoutRate,
            ["eos_token_id"] = eosTokenId,
            ["feed_forward_proj"] = "gated-gelu",
            ["initializer_factor"] = 1.0,
            ["is_encoder_decoder"] = true,
            ["is_gated_act"] = true,
            ["layer_norm_epsilon"] = o.NormEpsilon,
            ["model_type"] = "t5",
            ["n_positions"] = o.MaxSequenceLength,
            ["num_decoder_layers"] = o.NumDecoderLayers,
            ["num_heads"] = o.NumHeads,
            ["num_layers"] = o.NumEncoderLayers,
            ["pad_token_id"] = 0,
            ["relative_attention_max_distance"] = o.RelativeAttentionMaxDistance,
            ["relative_attention_num_buckets"] = o.RelativeAttentionNumBuckets,
            ["tie_word_embeddings"] = false,
            ["torch_dtype"] = "float32",
            ["use_cache"] = true,
            ["vocab_size"] = o.VocabSize,
        };
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return HuggingFaceTensors.Rename(KeyMap((T5Options)model), state);
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var o = (T5Options)model;
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var m in KeyMap(o))
        {
            // shared.weight may be stored under one of its tied aliases only.
            string name = m.Hf == "shared.weight" && !tensors.Contains(m.Hf) ? EmbeddingAliases.FirstOrDefault(tensors.Contains) ?? m.Hf : m.Hf;
            state[m.Loom] = tensors.Take(name, m.Shape);
        }
        foreach (var alias in EmbeddingAliases.Where(tensors.Contains))
        {
            var copy = tensors.Take(alias, o.VocabSize, o.ModelDim);
            if (!ReferenceEquals(copy, state["shared"]) && !copy.equal(state["shared"]).all().item<bool>())
                throw new InvalidDataException($"{tensors.Source}: tensor '{alias}' differs from 'shared.weight': T5 ties both stacks' input embeddings to it");
        }
        return state;
    }

    /// <summary>Hugging Face's tensor name, Loom's, and the shape both have, for a T5 v1.1 of <paramref name="o"/>'s shape.</summary>
    public static IEnumerable<(string Hf, string Loom, long[] Shape)> KeyMap(T5Options o)
    {
        ArgumentNullException.ThrowIfNull(o);
        long d = o.ModelDim, inner = (long)o.NumHeads * o.HeadDim;
        yield return ("shared.weight", "shared", [o.VocabSize, d]);
        foreach (var (stack, layers) in new[] { ("encoder", o.NumEncoderLayers), ("decoder", o.NumDecoderLayers) })
        {
            // The stack's one position bias table is held by its first block's self-attention.
            yield return ($"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", $"{stack}.relative_attention_bias.weight", [o.RelativeAttentionNumBuckets, o.NumHeads]);
            for (int i = 0; i < layers; i++)
            {
                string hf = $"{stack}.block.{i}.layer.", loom = $"{stack}.blocks.{i}.";
                foreach (var m in Attention($"{hf}0.SelfAttention.", $"{loom}self_attn.")) yield return m;
                yield return ($"{hf}0.layer_norm.weight", $"{loom}self_attn_norm.weight", [d]);
                int mlp = 1;
                if (stack == "decoder")
                {
                    foreach (var m in Attention($"{hf}1.EncDecAttention.", $"{loom}cross_attn.")) yield return m;
                    yield return ($"{hf}1.layer_norm.weight", $"{loom}cross_attn_norm.weight", [d]);
                    mlp = 2;
                }
                yield return ($"{hf}{mlp}.DenseReluDense.wi_0.weight", $"{loom}mlp.wi_0.weight", [o.MlpDim, d]);
                yield return ($"{hf}{mlp}.DenseReluDense.wi_1.weight", $"{loom}mlp.wi_1.weight", [o.MlpDim, d]);
                yield return ($"{hf}{mlp}.DenseReluDense.wo.weight", $"{loom}mlp.wo.weight", [d, o.MlpDim]);
                yield return ($"{hf}{mlp}.layer_norm.weight", $"{loom}mlp_norm.weight", [d]);
            }
            yield return ($"{stack}.final_layer_norm.weight", $"{stack}.final_norm.weight", [d]);
        }
        yield return ("lm_head.weight", "lm_head.weight", [o.VocabSize, d]);

        IEnumerable<(string, string, long[])> Attention(string hf, string loom)
        {
            yield return (hf + "q.weight", loom + "q.weight", [inner, d]);
            yield return (hf + "k.weight", loom + "k.weight", [inner, d]);
            yield return (hf + "v.weight", loom + "v.weight", [inner, d]);
            yield return (hf + "o.weight", loom + "o.weight", [d, inner]);
        }
    }
}
