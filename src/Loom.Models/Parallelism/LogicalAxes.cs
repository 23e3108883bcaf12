namespace Loom.Models.Parallelism;

/// <summary>
/// The logical axis names that parameters carry (t5x's <c>param_with_axes</c>), which
/// <see cref="PartitionRules"/> map onto the (data, model) mesh.
/// </summary>
public static class LogicalAxes
{
    /// <summary>The model width D (the residual stream).</summary>
    public const string Embed = "embed";

    /// <summary>Query heads × head width (attention's query kernel rows, output kernel columns).</summary>
    public const string Heads = "heads";

    /// <summary>Key/value heads × head width (one head under multi-query attention).</summary>
    public const string KvHeads = "kv_heads";

    /// <summary>The MLP's hidden units F.</summary>
    public const string Mlp = "mlp";

    /// <summary>The vocabulary V (embedding table and output projection rows).</summary>
    public const string Vocab = "vocab";

    /// <summary>The experts E of a mixture-of-experts layer.</summary>
    public const string Experts = "experts";

    /// <summary>Every name a rule may use.</summary>
    public static IReadOnlyList<string> All { get; } = [Embed, Heads, KvHeads, Mlp, Vocab, Experts];
}
