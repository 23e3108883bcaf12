using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// What the mixture-of-experts layers of one forward pass report (the flax <c>sow</c> of t5x's MoE
/// layers): each layer's auxiliary losses and routing statistics, summarised for
/// <see cref="ModelOutput"/>. A model makes one per <see cref="LanguageModel.Forward(Loom.Data.FeatureBatch)"/>
/// and hands it down its blocks; inference passes none.
/// </summary>
/// <param name="tokenMask">Real tokens, (B, T) (1 = real, 0 = padding), or null when every token is real.</param>
public sealed class MoeTrace(Tensor? tokenMask)
{
    private readonly List<MoeOutput> layers = [];

    /// <summary>Which tokens are real, (B, T); padding takes no expert slot and counts in no loss.</summary>
    public Tensor? TokenMask { get; } = tokenMask;

    /// <summary>
    /// Runs a block's feed-forward sublayer on <paramref name="h"/>, (B, T, D): a dense MLP as it is, a
    /// <see cref="MoeMlp"/> with the token mask, recording its report in <paramref name="trace"/> (if any).
    /// </summary>
    public static Tensor FeedForward(nn.Module layer, Tensor h, MoeTrace? trace) => layer switch
    {
        MoeMlp moe => trace is null ? moe.forward(h, null).Output : trace.Record(moe.forward(h, trace.TokenMask)), // (B, T, D)
        nn.Module<Tensor, Tensor> dense => dense.forward(h),                                                        // (B, T, D)
        _ => throw new ArgumentException($"a feed-forward layer must be a dense MLP or an MoeMlp, not {layer.GetType().Name}", nameof(layer)),
    };

    /// <summary>
    /// The weighted auxiliary losses, averaged over the MoE layers (<c>load_balancing</c> = α · E · Σᵢ fᵢ · Pᵢ,
    /// <c>router_z_loss</c>), and the statistics (<c>expert_load</c> (E), <c>expert_load_by_layer</c> (MoE layers, E),
    /// <c>dropped_fraction</c>); empty for a dense model.
    /// </summary>
    /// <param name="options">The model's MoE options (null: a dense model).</param>
    /// <param name="traces">The traces of the pass (an encoder-decoder has one per stack, each with its own token mask).</param>
    public static (IReadOnlyDictionary<string, Tensor> Auxiliary, IReadOnlyDictionary<string, Tensor> Statistics) Summarize(MoeOptions? options, params MoeTrace[] traces)
    {
        var layers = traces.SelectMany(t => t.layers).ToList();
        if (options is null || layers.Count == 0) return (new Dictionary<string, Tensor>(), new Dictionary<string, Tensor>());
        Tensor Mean(Func<MoeOutput, Tensor> part) => stack([.. layers.Select(part)]).mean([0]);
        return (
            new Dictionary<string, Tensor>
            {
                ["load_balancing"] = Mean(o => o.LoadBalancingLoss) * options.LoadBalancingWeight,
                ["router_z_loss"] = Mean(o => o.RouterZLoss) * options.RouterZLossWeight,
            },
            new Dictionary<string, Tensor>
            {
                ["expert_load"] = Mean(o => o.ExpertLoad),           // (E)
                ["expert_load_by_layer"] = stack([.. layers.Select(o => o.ExpertLoad)]), // (L_moe, E)
                ["dropped_fraction"] = Mean(o => o.DroppedFraction).reshape(1), // (1)
            });
    }

    private Tensor Record(MoeOutput output)
    {
        layers.Add(output);
        return output.Output;
    }
}
