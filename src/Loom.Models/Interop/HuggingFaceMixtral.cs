using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// Hugging Face's Mixtral layout (<c>MixtralForCausalLM</c>): a Llama whose every MLP is a sparse mixture of SwiGLU
/// experts behind a linear router. Attention, norms, embeddings and the output layer are stored as a Llama stores
/// them (<see cref="HuggingFaceLlama.KeyMap"/>); each expert's kernels are tensors of their own
/// (<c>block_sparse_moe.experts.M.w1</c> = gate, <c>w3</c> = up, <c>w2</c> = down), which Loom holds stacked as
/// (E, …) tensors in the same (out, in) layout, so they are split and stacked without transposes.
/// </summary>
/// <remarks>
/// Loom's router computes what Mixtral's does at inference: a softmax over all experts in float32, the top 2, their
/// weights renormalised to sum to 1, every assignment kept (Loom's routing is dropless in evaluation mode whatever
/// the capacity factor), no jitter. Training-only settings map as follows: Mixtral is dropless, so an import has no
/// capacity factor; it has no router z-loss (weight 0); its <c>router_aux_loss_coef</c> multiplies a balance loss
/// that counts each token's k choices over N tokens, k times Loom's count over k·N, so Loom's weight is the
/// coefficient times k. A Loom model's capacity factor and z-loss weight do not change its outputs and are not
/// written.
/// </remarks>
public sealed class HuggingFaceMixtral : IHuggingFaceArchitecture
{
    // Mixtral's rotary base when config.json gives none (MixtralConfig's default).
    private const double DefaultRopeTheta = 1e6;

    // Mixtral's per-expert kernel names and Loom's stacked ones: w1 = gate, w3 = up, w2 = down.
    private static readonly (string Hf, string Loom)[] ExpertKernels = [("w1", "gate"), ("w3", "up"), ("w2", "down")];

    private HuggingFaceMixtral()
    {
    }

    /// <summary>The one instance.</summary>
    public static HuggingFaceMixtral Instance { get; } = new();

    /// <inheritdoc />
    public IReadOnlyList<string> Names { get; } = ["MixtralForCausalLM"];

    /// <inheritdoc />
    public string? WhyNot(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model is not DecoderLmOptions options)
            return $"model.architecture = {model.Architecture}: only decoder-only (decoder_lm) models are Mixtrals";
        return options.Moe switch
        {
            null => "model.moe is not set: a Mixtral's MLPs are mixtures of experts (a dense decoder is a LlamaForCausalLM)",
            { Every: not 1 } moe => $"model.moe.every = {moe.Every}: Mixtral has a mixture of experts in every layer; train with model.moe.every = 1",
            { TopK: not 2 } moe => $"model.moe.top_k = {moe.TopK}: Mixtral renormalises the chosen experts' weights to sum to 1, so its top-1 expert would get weight 1 where Loom's top-1 (Switch) routing weights it by its probability; train with model.moe.top_k = 2",
            // Everything else is a Llama's: the same checks, with the same option names.
            _ => HuggingFaceLlama.Instance.WhyNot(options with { Moe = null }),
        };
    }

    /// <inheritdoc />
    public ModelOptions ReadOptions(HuggingFaceConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int experts = config.Int("num_local_experts"), topK = config.Int("num_experts_per_tok");
        if (topK != 2)
            throw config.Error($"num_experts_per_tok = {topK}: Loom computes Mixtral's routing for 2 experts per token (its top-1 routing weights the expert by its probability, where Mixtral's renormalisation gives it weight 1)");
        if (config.OptionalNumber("router_jitter_noise") is { } jitter && jitter != 0)
            throw config.Error($"router_jitter_noise = {jitter}: Loom's router has no jitter");
        if (config.Json["rope_parameters"] is JsonObject parameters && parameters["rope_type"] is JsonValue type && type.ToString() != "default")
            throw config.Error($"rope_parameters.rope_type = {type}: Loom imports unscaled rotary positions");
        // The attention, norms and embeddings read as a Llama's (sliding window, biases and rope checks included).
        var dense = (DecoderLmOptions)HuggingFaceLlama.Instance.ReadOptions(config);
        // transformers 5 writes the base inside rope_parameters; without either, MixtralConfig's default (not Llama's).
        double ropeBase = config.OptionalNumber("rope_theta")
            ?? (config.Json["rope_parameters"] is JsonObject rope ? new HuggingFaceConfig(rope, config.Path).OptionalNumber("rope_theta") : null)
            ?? DefaultRopeTheta;
        try
        {
            return (dense with
            {
                RopeBase = ropeBase,
                Moe = new MoeOptions
                {
                    NumExperts = experts,
                    TopK = topK,
                    Every = 1,
                    CapacityFactor = null,
                    LoadBalancingWeight = config.Number("router_aux_loss_coef", 0.001) * topK,
                    RouterZLossWeight = 0,
                },
            }).Validate();
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
        var moe = o.Moe ?? throw new ArgumentException("a Mixtral needs model.moe", nameof(model));
        // A Llama's config less the fields MixtralConfig does not have, plus the router's.
        var config = HuggingFaceLlama.Instance.WriteConfig(o with { Moe = null }, bosTokenId, eosTokenId);
        foreach (var llamaOnly in new[] { "attention_bias", "mlp_bias", "pretraining_tp" }) config.Remove(llamaOnly);
        config["architectures"] = new JsonArray("MixtralForCausalLM");
        config["model_type"] = "mixtral";
        config["num_local_experts"] = moe.NumExperts;
        config["num_experts_per_tok"] = moe.TopK;
        config["output_router_logits"] = false;
        config["router_aux_loss_coef"] = moe.LoadBalancingWeight / moe.TopK;
        config["router_jitter_noise"] = 0.0;
        config["sliding_window"] = null;
        return new JsonObject(config.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToHuggingFace(ModelOptions model, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var o = (DecoderLmOptions)model;
        var tensors = HuggingFaceTensors.Rename(SharedKeyMap(o), state);
        for (int i = 0; i < o.NumLayers; i++)
        {
            foreach (var (hf, loom) in ExpertKernels)
            {
                var stacked = state[$"blocks.{i}.mlp.{loom}.weight"];                     // (E, out, in)
                for (int e = 0; e < o.Moe!.NumExperts; e++) tensors[ExpertName(i, e, hf)] = stacked[e];
            }
        }
        return tensors;
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> ToLoom(ModelOptions model, HuggingFaceTensors tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var o = (DecoderLmOptions)model;
        var moe = o.Moe ?? throw new ArgumentException("a Mixtral needs model.moe", nameof(model));
        tensors.Ignore(name => name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)); // recomputed from config.json
        var state = tensors.TakeAll(SharedKeyMap(o));
        for (int i = 0; i < o.NumLayers; i++)
        {
            foreach (var (hf, loom) in ExpertKernels)
            {
                long[] shape = hf == "w2" ? [o.ModelDim, o.MlpDim] : [o.MlpDim, o.ModelDim]; // (out, in) per expert
                state[$"blocks.{i}.mlp.{loom}.weight"] = stack(Enumerable.Range(0, moe.NumExperts).Select(e => tensors.Take(ExpertName(i, e, hf), shape)).ToArray()); // (E, out, in)
            }
        }
        return state;
    }

    /// <summary>
    /// The tensors stored one to one: the Llama's attention, norms, embeddings and output layer (its dense MLP
    /// left out), and each layer's router, (E, D) in both.
    /// </summary>
    private static IEnumerable<(string Hf, string Loom, long[] Shape)> SharedKeyMap(DecoderLmOptions o)
    {
        foreach (var m in HuggingFaceLlama.KeyMap(o with { Moe = null }).Where(m => !m.Hf.Contains(".mlp.", StringComparison.Ordinal)))
            yield return m;
        for (int i = 0; i < o.NumLayers; i++)
            yield return ($"model.layers.{i}.block_sparse_moe.gate.weight", $"blocks.{i}.mlp.router_weight", [o.Moe!.NumExperts, o.ModelDim]);
    }

    private static string ExpertName(int layer, int expert, string kernel) => $"model.layers.{layer}.block_sparse_moe.experts.{expert}.{kernel}.weight";
}
