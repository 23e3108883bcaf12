namespace Loom.Data.Caching;

/// <summary>Settings of <see cref="TaskCache.Build"/>.</summary>
public sealed record TaskCacheBuildOptions
{
    /// <summary>The most shards a split may be written to (each is two open files while building).</summary>
    public const int MaxShards = 1024;

    /// <summary>The cache root, holding <c>TASK/SPLIT</c> folders; null for <see cref="TaskCache.ResolveRoot"/>'s per-user default.</summary>
    public string? Root { get; init; }

    /// <summary>The splits to cache; null for all of the task's splits.</summary>
    public IReadOnlyList<string>? Splits { get; init; }

    /// <summary>Shards per split, 1 to <see cref="MaxShards"/>; 4 by default.</summary>
    public int Shards
    {
        get;
        init => field = value is >= 1 and <= MaxShards ? value
            : throw new ArgumentException($"shards = {value} must be between 1 and {MaxShards}");
    } = 4;

    /// <summary>Seed passed to the task's pipeline (random preprocessors depend on it); 0 by default.</summary>
    public ulong Seed { get; init; }

    /// <summary>Replace splits that are already cached (otherwise the build refuses to start).</summary>
    public bool Force { get; init; }

    /// <summary>Report progress every this many examples per split, positive; 10,000 by default.</summary>
    public int ProgressInterval
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"progress interval = {value} must be positive");
    } = 10_000;
}
