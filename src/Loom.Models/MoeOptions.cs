namespace Loom.Models;

/// <summary>
/// Sparse mixture-of-experts MLPs (GShard, Switch, ST-MoE, Mixtral): the MLP of every
/// <see cref="Every"/>-th layer becomes <see cref="NumExperts"/> expert MLPs, and a router sends each
/// token to its <see cref="TopK"/> best experts. Set as <c>model.moe</c> in a decoder or T5 config.
/// </summary>
public sealed record MoeOptions
{
    /// <summary>E: experts per MoE layer.</summary>
    public int NumExperts { get; init; } = 8;

    /// <summary>k: experts each token is routed to (token-choice top-k); 1 (Switch) or 2 (GShard, Mixtral).</summary>
    public int TopK { get; init; } = 2;

    /// <summary>Every how many layers the MLP is an MoE layer: 1 = every layer (Mixtral), 2 = every other layer (GShard, Switch).</summary>
    public int Every { get; init; } = 1;

    /// <summary>
    /// Expert capacity as a multiple of an even share, C = ⌈factor · N · k / E⌉ token slots per expert for N
    /// tokens; assignments beyond it are dropped (the token passes through the residual). Null = dropless.
    /// </summary>
    public double? CapacityFactor { get; init; } = 1.25;

    /// <summary>α of the Switch load-balancing loss α · E · Σᵢ fᵢ · Pᵢ (Switch: 0.01).</summary>
    public double LoadBalancingWeight { get; init; } = 0.01;

    /// <summary>Weight of the ST-MoE router z-loss mean(logsumexp(router logits)²) (ST-MoE: 0.001).</summary>
    public double RouterZLossWeight { get; init; } = 0.001;

    /// <summary>Whether layer <paramref name="layer"/> (0-based) has an MoE MLP: the last of every <see cref="Every"/> layers.</summary>
    public bool IsMoeLayer(int layer) => (layer + 1) % Every == 0;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public MoeOptions Validate()
    {
        if (NumExperts <= 0) throw new ArgumentException($"model.moe.num_experts = {NumExperts} must be a positive integer");
        if (TopK is not (1 or 2)) throw new ArgumentException($"model.moe.top_k = {TopK} must be 1 or 2 (token-choice top-1 or top-2 routing)");
        if (TopK > NumExperts) throw new ArgumentException($"model.moe.top_k = {TopK} must be at most model.moe.num_experts = {NumExperts}");
        if (Every <= 0) throw new ArgumentException($"model.moe.every = {Every} must be a positive integer");
        if (CapacityFactor is double c && !(c > 0)) throw new ArgumentException($"model.moe.capacity_factor = {c} must be positive, or null for dropless routing");
        if (!(LoadBalancingWeight >= 0)) throw new ArgumentException($"model.moe.load_balancing_weight = {LoadBalancingWeight} must be 0 or more");
        if (!(RouterZLossWeight >= 0)) throw new ArgumentException($"model.moe.router_z_loss_weight = {RouterZLossWeight} must be 0 or more");
        return this;
    }
}
