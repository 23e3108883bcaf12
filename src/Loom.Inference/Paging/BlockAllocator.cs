namespace Loom.Inference.Paging;

/// <summary>Where the blocks of a pool are: <see cref="InUse"/> + <see cref="CachedFree"/> + <see cref="Free"/> = the pool.</summary>
/// <param name="InUse">Blocks held by at least one sequence.</param>
/// <param name="CachedFree">Blocks no sequence holds that keep a full block's contents for the prefix cache; reused on a hit, evicted (least recently freed first) when the pool needs space.</param>
/// <param name="Free">Blocks holding nothing worth keeping.</param>
public readonly record struct KvBlockUsage(int InUse, int CachedFree, int Free);

/// <summary>What the prefix cache saved since the allocator was created.</summary>
/// <param name="LookedUpBlocks">Full prompt blocks looked up in the cache.</param>
/// <param name="HitBlocks">Lookups answered by a cached block, which a sequence then shared instead of allocating and computing one.</param>
/// <param name="HitTokens">Tokens in those blocks: prompt tokens whose keys and values were not computed again.</param>
/// <param name="EvictedBlocks">Cached free blocks given up to make room for new ones.</param>
public readonly record struct PrefixCacheStats(long LookedUpBlocks, long HitBlocks, long HitTokens, long EvictedBlocks);

/// <summary>
/// Bookkeeping for a fixed pool of KV blocks (vLLM's block pool): reference counts, free blocks,
/// and a prefix cache that maps the hash of a full block's contents (<see cref="BlockHash"/>) to
/// the block holding them. A block whose count drops to zero keeps its cached contents until the
/// pool needs space, then the least recently freed such block is evicted. It owns no tensors: the
/// ids index <see cref="PagedKvStore"/>. Sequences use it through <see cref="BlockTable"/>; the
/// scheduler reads <see cref="FreeBlockCount"/>, <see cref="Usage"/> and <see cref="Stats"/>.
/// Not thread-safe: one scheduler thread owns it.
/// </summary>
public sealed class BlockAllocator
{
    private readonly int[] refCounts;
    private readonly BlockHash?[] hashes;                          // contents of each registered full block
    private readonly Dictionary<BlockHash, int> cachedBlocks = new(); // hash -> the one block registered for it
    private readonly Stack<int> uncachedFree;                      // free blocks with nothing worth keeping; used first
    private readonly LinkedList<int> cachedFree = new();           // free registered blocks, least recently freed first
    private readonly LinkedListNode<int>?[] cachedFreeNodes;       // each block's node in cachedFree, for O(1) removal on a hit
    private long lookedUpBlocks, hitBlocks, evictedBlocks;

    /// <summary>Creates a pool of <paramref name="numBlocks"/> free blocks of <paramref name="blockSize"/> tokens.</summary>
    /// <param name="numBlocks">Blocks in the pool; <see cref="KvBlockOptions.ResolveNumBlocks"/> gives it.</param>
    /// <param name="blockSize">Tokens per block.</param>
    /// <param name="enablePrefixCaching">Whether full blocks are registered and shared; when false every block is private and freed blocks keep nothing.</param>
    public BlockAllocator(int numBlocks, int blockSize, bool enablePrefixCaching)
    {
        if (numBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(numBlocks), $"kv_cache.num_blocks = {numBlocks} must be positive");
        if (blockSize <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize), $"kv_cache.block_size = {blockSize} must be positive");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        PrefixCachingEnabled = enablePrefixCaching;
        refCounts = new int[numBlocks];
        hashes = new BlockHash?[numBlocks];
        cachedFreeNodes = new LinkedListNode<int>?[numBlocks];
        // Pushed in reverse so that blocks are handed out 0, 1, 2, ... (easier to read in tests and logs).
        uncachedFree = new Stack<int>(Enumerable.Range(0, numBlocks).Reverse());
    }

    /// <summary>Creates the pool that <paramref name="options"/> describes for keys and values of <paramref name="layout"/>.</summary>
    public BlockAllocator(KvBlockOptions options, KvLayout layout)
        : this((options ?? throw new ArgumentNullException(nameof(options))).ResolveNumBlocks(layout), options.BlockSize, options.EnablePrefixCaching)
    {
    }

    /// <summary>Blocks in the pool.</summary>
    public int NumBlocks { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    /// <summary>Whether full blocks are shared through the prefix cache.</summary>
    public bool PrefixCachingEnabled { get; }

    /// <summary>Blocks an allocation can take now: free ones and cached free ones (which it evicts).</summary>
    public int FreeBlockCount => uncachedFree.Count + cachedFree.Count;

    /// <summary>Where the blocks are now.</summary>
    public KvBlockUsage Usage => new(NumBlocks - FreeBlockCount, cachedFree.Count, uncachedFree.Count);

    /// <summary>Prefix cache lookups, hits and evictions so far.</summary>
    public PrefixCacheStats Stats => new(lookedUpBlocks, hitBlocks, hitBlocks * BlockSize, evictedBlocks);

    /// <summary>How many sequences hold block <paramref name="blockId"/>.</summary>
    public int RefCount(int blockId) => refCounts[CheckId(blockId)];

    /// <summary>Takes a free block with a reference count of one; evicts the least recently freed cached block when no plain free block is left.</summary>
    /// <returns>False, changing nothing, when every block is in use.</returns>
    public bool TryAllocate(out int blockId)
    {
        if (uncachedFree.TryPop(out blockId))
        {
            refCounts[blockId] = 1;
            return true;
        }
        if (cachedFree.First is { } oldest)
        {
            blockId = oldest.Value;
            RemoveFromCachedFree(blockId);
            cachedBlocks.Remove(hashes[blockId]!.Value);
            hashes[blockId] = null;
            evictedBlocks++;
            refCounts[blockId] = 1;
            return true;
        }
        blockId = -1;
        return false;
    }

    /// <summary>Takes a free block with a reference count of one (see <see cref="TryAllocate"/>).</summary>
    /// <exception cref="KvCacheFullException">Every block is in use.</exception>
    public int Allocate() => TryAllocate(out int blockId) ? blockId : throw new KvCacheFullException(1, FreeBlockCount, NumBlocks);

    /// <summary>Drops one reference to <paramref name="blockId"/>; at zero the block becomes free, keeping its contents for the prefix cache if it was registered.</summary>
    /// <exception cref="InvalidOperationException">The block is already free (a sequence released it twice).</exception>
    public void Free(int blockId)
    {
        if (refCounts[CheckId(blockId)] == 0)
            throw new InvalidOperationException($"KV block {blockId} is already free; a sequence released it twice");
        if (--refCounts[blockId] > 0) return;
        if (hashes[blockId] is null)
            uncachedFree.Push(blockId);
        else
            cachedFreeNodes[blockId] = cachedFree.AddLast(blockId);
    }

    /// <summary>
    /// Looks up a full block by its contents and, on a hit, takes a reference to it (reviving it if it
    /// was cached free). Called by <see cref="BlockTable"/> for prompt blocks.
    /// </summary>
    internal bool TryReuseCached(BlockHash hash, out int blockId)
    {
        lookedUpBlocks++;
        if (!cachedBlocks.TryGetValue(hash, out blockId)) return false;
        if (refCounts[blockId] == 0) RemoveFromCachedFree(blockId);
        refCounts[blockId]++;
        hitBlocks++;
        return true;
    }

    /// <summary>
    /// Records that block <paramref name="blockId"/>, held by the caller, is now full with the contents
    /// <paramref name="hash"/> identifies. If another block already holds them this one stays private
    /// (vLLM keeps the first), so one hash never maps to two blocks.
    /// </summary>
    internal void Register(int blockId, BlockHash hash)
    {
        if (!PrefixCachingEnabled || hashes[CheckId(blockId)] is not null || !cachedBlocks.TryAdd(hash, blockId)) return;
        hashes[blockId] = hash;
    }

    /// <summary>Throws <see cref="InvalidOperationException"/> if the bookkeeping is inconsistent; tests call it after every operation.</summary>
    internal void CheckInvariants()
    {
        var inUncached = new bool[NumBlocks];
        foreach (int id in uncachedFree)
        {
            Require(!inUncached[id], $"block {id} is twice in the free stack");
            inUncached[id] = true;
            Require(refCounts[id] == 0, $"free block {id} has reference count {refCounts[id]}");
            Require(hashes[id] is null, $"free block {id} in the uncached stack still has a hash");
        }
        int cachedFreeCount = 0;
        for (var node = cachedFree.First; node is not null; node = node.Next)
        {
            int id = node.Value;
            cachedFreeCount++;
            Require(ReferenceEquals(cachedFreeNodes[id], node), $"cached free block {id} has a stale node");
            Require(!inUncached[id], $"block {id} is both free and cached free");
            Require(refCounts[id] == 0, $"cached free block {id} has reference count {refCounts[id]}");
            Require(hashes[id] is not null, $"cached free block {id} has no hash");
        }
        Require(cachedFreeCount == cachedFree.Count, "the cached free list miscounts");
        int registered = 0;
        for (int id = 0; id < NumBlocks; id++)
        {
            Require(refCounts[id] >= 0, $"block {id} has negative reference count {refCounts[id]}");
            bool isCachedFree = cachedFreeNodes[id] is not null;
            Require(isCachedFree == (refCounts[id] == 0 && hashes[id] is not null), $"block {id} is {(isCachedFree ? "" : "not ")}in the cached free list with reference count {refCounts[id]}");
            Require(inUncached[id] == (refCounts[id] == 0 && hashes[id] is null), $"block {id} is {(inUncached[id] ? "" : "not ")}in the free stack with reference count {refCounts[id]}");
            if (hashes[id] is { } hash)
            {
                registered++;
                Require(PrefixCachingEnabled, $"block {id} is registered with prefix caching off");
                Require(cachedBlocks.TryGetValue(hash, out int owner) && owner == id, $"block {id}'s hash maps to another block");
            }
        }
        Require(registered == cachedBlocks.Count, $"{cachedBlocks.Count} hashes are cached but {registered} blocks are registered");
        Require(uncachedFree.Count + cachedFree.Count + refCounts.Count(r => r > 0) == NumBlocks, "blocks are lost or counted twice");
        Require(hitBlocks <= lookedUpBlocks, "more prefix cache hits than lookups");
    }

    private static void Require(bool condition, string problem)
    {
        if (!condition) throw new InvalidOperationException($"block allocator invariant broken: {problem}");
    }

    private void RemoveFromCachedFree(int blockId)
    {
        cachedFree.Remove(cachedFreeNodes[blockId]!);
        cachedFreeNodes[blockId] = null;
    }

    private int CheckId(int blockId) =>
        (uint)blockId < (uint)NumBlocks ? blockId : throw new ArgumentOutOfRangeException(nameof(blockId), $"KV block id {blockId} is outside the pool of {NumBlocks} blocks");
}
