namespace Loom.Inference.Paging;

/// <summary>
/// How the paged KV cache is sized: tokens per block and either a block count or a memory budget
/// from which <see cref="ResolveNumBlocks"/> derives the count. Each field is checked when set.
/// </summary>
public sealed record KvBlockOptions
{
    private readonly int blockSize = 16;
    private readonly int? numBlocks;
    private readonly long? memoryBudgetBytes;

    /// <summary>Tokens per block (vLLM's default is 16): smaller wastes less on the last, partial block of each sequence; larger means fewer table entries and gathers.</summary>
    public int BlockSize
    {
        get => blockSize;
        init => blockSize = value > 0 ? value : throw new ArgumentException($"kv_cache.block_size = {value} must be positive");
    }

    /// <summary>Number of blocks in the pool; set this or <see cref="MemoryBudgetBytes"/>.</summary>
    public int? NumBlocks
    {
        get => numBlocks;
        init => numBlocks = value is null or > 0 ? value : throw new ArgumentException($"kv_cache.num_blocks = {value} must be positive");
    }

    /// <summary>Bytes the keys and values of all layers may occupy; the block count is the number of whole blocks that fit. Set this or <see cref="NumBlocks"/>.</summary>
    public long? MemoryBudgetBytes
    {
        get => memoryBudgetBytes;
        init => memoryBudgetBytes = value is null or > 0 ? value : throw new ArgumentException($"kv_cache.memory_budget_bytes = {value} must be positive");
    }

    /// <summary>Share the blocks of common prompt prefixes between sequences and keep freed full blocks for reuse.</summary>
    public bool EnablePrefixCaching { get; init; } = true;

    /// <summary>Bytes of one block across all layers: keys and values, 2 · layers · kv heads · head dim · block size · element bytes.</summary>
    public long BytesPerBlock(KvLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        return 2L * layout.NumLayers * layout.NumKvHeads * layout.HeadDim * BlockSize * layout.ElementBytes;
    }

    /// <summary>The pool's block count: <see cref="NumBlocks"/>, or as many blocks of <paramref name="layout"/> as <see cref="MemoryBudgetBytes"/> holds.</summary>
    /// <exception cref="ArgumentException">Neither or both are set, or the budget holds no block.</exception>
    public int ResolveNumBlocks(KvLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        return (NumBlocks, MemoryBudgetBytes) switch
        {
            ({ } count, null) => count,
            (null, { } budget) => FromBudget(budget, BytesPerBlock(layout)),
            (null, null) => throw new ArgumentException("kv_cache: set num_blocks or memory_budget_bytes to size the cache"),
            _ => throw new ArgumentException("kv_cache: set num_blocks or memory_budget_bytes, not both"),
        };
    }

    private static int FromBudget(long budget, long bytesPerBlock)
    {
        long count = budget / bytesPerBlock;
        if (count < 1)
            throw new ArgumentException($"kv_cache.memory_budget_bytes = {budget} holds no block of {bytesPerBlock} bytes; raise it or lower kv_cache.block_size");
        if (count > int.MaxValue)
            throw new ArgumentException($"kv_cache.memory_budget_bytes = {budget} gives {count} blocks, more than {int.MaxValue}; raise kv_cache.block_size");
        return (int)count;
    }
}
