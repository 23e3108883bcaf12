namespace Loom.Inference.Engine;

/// <summary>Settings of <see cref="ContinuousBatchingEngine"/>.</summary>
public sealed record EngineOptions
{
    /// <summary>Tokens per KV-cache block (16, as vLLM).</summary>
    public int BlockSize
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"block size = {value} must be positive");
    } = 16;

    /// <summary>
    /// Blocks in the KV-cache pool; null sizes it from <see cref="KvCacheBytes"/>, or, when that is null
    /// too, to hold <see cref="MaxRunning"/> full contexts.
    /// </summary>
    public int? NumBlocks
    {
        get;
        init => field = value is null or > 0 ? value : throw new ArgumentException($"num blocks = {value} must be positive");
    }

    /// <summary>The KV cache's memory budget in bytes, from which the block count follows; null to use <see cref="NumBlocks"/>.</summary>
    public long? KvCacheBytes
    {
        get;
        init => field = value is null or > 0 ? value : throw new ArgumentException($"KV cache bytes = {value} must be positive");
    }

    /// <summary>The most sequences in one step's batch.</summary>
    public int MaxRunning
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"max running = {value} must be positive");
    } = 64;

    /// <summary>
    /// The most tokens one step computes: every running sequence's decode token first, then prompt
    /// chunks of sequences being prefilled (chunked prefill) until the budget is spent.
    /// </summary>
    public int TokenBudget
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"token budget = {value} must be positive");
    } = 512;

    /// <summary>The most requests that may wait; more are refused with <see cref="EngineOverloadedException"/>.</summary>
    public int MaxQueue
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"max queue = {value} must be positive");
    } = 256;

    /// <summary>Share the KV blocks of prompt prefixes between requests.</summary>
    public bool PrefixCaching { get; init; } = true;
}
