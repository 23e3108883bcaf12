namespace Loom.Planning;

/// <summary>How the feed-forward (and attention projection) weights are split over the chips (Pope et al., section 3.2).</summary>
public enum FeedForwardLayout
{
    /// <summary>1D weight-stationary: each E×F matrix split along F (heads for attention) over all chips; activations all-gathered and reduce-scattered every layer (cost 2BLE, independent of chips).</summary>
    WeightStationary1D,

    /// <summary>2D weight-stationary: E split over the X axes, F over the YZ axes; activation traffic falls as 1/√chips (8BLE/√n at the best X).</summary>
    WeightStationary2D,

    /// <summary>X weight-gathered: weights all-gathered over one axis, the batch split over it; 1D weight-stationary within the rest.</summary>
    WeightGatheredX,

    /// <summary>XY weight-gathered: weights all-gathered over two axes (needs a 3D torus), the batch split over them.</summary>
    WeightGatheredXY,

    /// <summary>XYZ weight-gathered: the whole layer's weights all-gathered on every chip, the batch split over all chips; no activation traffic.</summary>
    WeightGatheredXYZ,
}

/// <summary>How attention, and with it the KV cache, is split (Pope et al., section 3.3).</summary>
public enum AttentionSharding
{
    /// <summary>Over heads, like the feed-forward layer. With multi-query attention every head shard needs the one K/V head, so the cache is replicated.</summary>
    Heads,

    /// <summary>Over the batch (the paper's choice for multi-query attention): each chip loads only its sequences' cache, for two all-to-alls of Q and the output per layer.</summary>
    Batch,
}

/// <summary>A layout: the feed-forward layout and the attention sharding.</summary>
public sealed record Layout(FeedForwardLayout FeedForward, AttentionSharding Attention)
{
    /// <summary>Every combination, in the paper's order.</summary>
    public static IReadOnlyList<Layout> All { get; } =
        [.. Enum.GetValues<FeedForwardLayout>().SelectMany(f => Enum.GetValues<AttentionSharding>().Select(a => new Layout(f, a)))];

    /// <summary>The short name <c>--layout</c> takes, e.g. ws2d/batch.</summary>
    public string Name => $"{FeedForwardName(FeedForward)}/{(Attention == AttentionSharding.Batch ? "batch" : "heads")}";

    /// <summary>Parses a name like ws2d/batch, wg-xyz/heads or ws1d (attention over batch by default).</summary>
    /// <exception cref="ArgumentException">An unknown name; the message lists the known ones.</exception>
    public static Layout Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string[] parts = name.Trim().ToLowerInvariant().Split('/');
        var ff = Enum.GetValues<FeedForwardLayout>().Where(f => FeedForwardName(f) == parts[0]).Cast<FeedForwardLayout?>().FirstOrDefault();
        AttentionSharding? attention = parts.Length == 1 ? AttentionSharding.Batch
            : parts.Length == 2 && parts[1] == "batch" ? AttentionSharding.Batch
            : parts.Length == 2 && parts[1] == "heads" ? AttentionSharding.Heads : null;
        if (ff is null || attention is null)
            throw new ArgumentException($"unknown layout '{name}': use one of {string.Join(", ", All.Select(l => l.Name))}");
        return new Layout(ff.Value, attention.Value);
    }

    private static string FeedForwardName(FeedForwardLayout f) => f switch
    {
        FeedForwardLayout.WeightStationary1D => "ws1d",
        FeedForwardLayout.WeightStationary2D => "ws2d",
        FeedForwardLayout.WeightGatheredX => "wg-x",
        FeedForwardLayout.WeightGatheredXY => "wg-xy",
        _ => "wg-xyz",
    };

    /// <inheritdoc/>
    public override string ToString() => Name;
}
