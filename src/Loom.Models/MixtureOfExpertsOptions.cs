namespace Loom.Models;

/// <summary>
/// Routing switches of a mixture-of-experts feed-forward layer (config section <c>model.moe</c>):
/// how many experts, how many each token visits, how many tokens an expert may take, and the
/// weights of the auxiliary losses. The expert width and activation are the model's
/// (<c>model.mlp_dim</c>, <c>model.activation</c>). Validate with <see cref="Validate"/>.
/// </summary>
public sealed record MixtureOfExpertsOptions
{
    /// <summary>Number of experts E in each MoE layer.</summary>
    public int NumExperts { get; init; } = 8;

    /// <summary>Experts each token is sent to: 1 (Switch) or 2 (GShard, Mixtral).</summary>
    public int TopK { get; init; } = 2;

    /// <summary>
    /// Slots per expert as a multiple of an even share, C = ceil(capacity_factor · N · k / E) for N
    /// tokens; assignments beyond C are dropped. Null = dropless: every assignment is computed.
    /// </summary>
    public double? CapacityFactor { get; init; } = 1.25;

    /// <summary>Coefficient α of the load-balancing loss in the training loss (Switch: 0.01).</summary>
    public double LoadBalancingLossWeight { get; init; } = 0.01;

    /// <summary>Coefficient of the router z-loss in the training loss (ST-MoE: 0.001).</summary>
    public double RouterZLossWeight { get; init; } = 0.001;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and the valid range.</summary>
    public MixtureOfExpertsOptions Validate()
    {
        ValidateRouting(NumExperts, TopK, CapacityFactor);
        NonNegative(LoadBalancingLossWeight, "load_balancing_loss_weight");
        NonNegative(RouterZLossWeight, "router_z_loss_weight");
        return this;
    }

    /// <summary>The routing checks of <see cref="Validate"/>, shared with the layer's constructor, which takes plain values.</summary>
    internal static void ValidateRouting(int numExperts, int topK, double? capacityFactor)
    {
        if (numExperts <= 0) throw new ArgumentException($"model.moe.num_experts = {numExperts} must be a positive integer");
        if (topK > numExperts) throw new ArgumentException($"model.moe.top_k = {topK} must be at most model.moe.num_experts = {numExperts}");
        if (topK is not (1 or 2)) throw new ArgumentException($"model.moe.top_k = {topK} must be 1 (Switch) or 2 (GShard)");
        if (capacityFactor is { } c && !(c > 0 && double.IsFinite(c)))
            throw new ArgumentException($"model.moe.capacity_factor = {c} must be positive (or null for dropless routing)");
    }

    private static void NonNegative(double value, string name)
    {
        if (!(value >= 0 && double.IsFinite(value))) throw new ArgumentException($"model.moe.{name} = {value} must be a non-negative number");
    }
}
