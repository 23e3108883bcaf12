namespace Loom.Inference.Paging;

/// <summary>
/// The KV block pool has too few free blocks for a request. A scheduler avoids it by asking
/// <see cref="BlockTable.CanAppend"/> or calling <see cref="BlockTable.TryAppend"/> and preempting
/// a sequence when the answer is no.
/// </summary>
public sealed class KvCacheFullException : InvalidOperationException
{
    /// <summary>Creates the exception with no message.</summary>
    public KvCacheFullException() { }

    /// <summary>Creates the exception with a one-line message.</summary>
    /// <param name="message">What ran out and how to make room.</param>
    public KvCacheFullException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the failure that caused it.</summary>
    /// <param name="message">What ran out and how to make room.</param>
    /// <param name="innerException">The underlying failure.</param>
    public KvCacheFullException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a request of <paramref name="blocksNeeded"/> blocks when <paramref name="blocksFree"/> of <paramref name="numBlocks"/> are free.</summary>
    public KvCacheFullException(int blocksNeeded, int blocksFree, int numBlocks)
        : base($"KV cache full: {blocksNeeded} blocks needed, {blocksFree} of {numBlocks} free; release or preempt a sequence, or raise kv_cache.num_blocks or kv_cache.memory_budget_bytes")
    {
        BlocksNeeded = blocksNeeded;
        BlocksFree = blocksFree;
    }

    /// <summary>Blocks the request needed.</summary>
    public int BlocksNeeded { get; }

    /// <summary>Blocks that were free (including freed blocks kept for the prefix cache).</summary>
    public int BlocksFree { get; }
}
