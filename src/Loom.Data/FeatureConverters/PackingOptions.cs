namespace Loom.Data.FeatureConverters;

/// <summary>What every feature converter's options share: packing, and the start and pad ids of decoder rows.</summary>
public abstract record PackingOptions
{
    /// <summary>Whether to pack several examples into a row (true, the default) or put one example per row.</summary>
    public bool Pack { get; init; } = true;

    /// <summary>
    /// The decoder input at the first position of every segment, where there is no previous token.
    /// seqio uses 0 (T5's pad id doubles as BOS); 0 by default.
    /// </summary>
    public int StartId
    {
        get;
        init => field = value >= 0 ? value : throw new ArgumentException($"start id = {value} must be non-negative");
    }

    /// <summary>The token that fills padding positions; 0 by default, as seqio.</summary>
    public int PadId
    {
        get;
        init => field = value >= 0 ? value : throw new ArgumentException($"pad id = {value} must be non-negative");
    }
}
