namespace Loom.Inference.Paging;

/// <summary>
/// One sequence's view of the paged KV cache: which block holds each run of
/// <see cref="BlockSize"/> positions (position p lives in block <c>BlockIds[p / BlockSize]</c> at
/// offset <c>p % BlockSize</c>). The scheduler appends tokens before the runner writes their keys
/// and values, and releases the table when the sequence finishes, is cancelled or is preempted.
/// </summary>
/// <remarks>
/// <para>
/// Prefix caching: when an append starts at a block boundary, the table has so far only reused cached
/// blocks, and the append holds a whole block followed by at least one more token, the block is
/// looked up by its contents; a hit shares the cached block (its keys and values are already
/// written) and adds to <see cref="CachedTokenCount"/>. The first miss ends lookups for the table,
/// so cached positions are always a prefix and the runner computes from <see cref="CachedTokenCount"/>
/// on. The "one more token" rule keeps at least one token of every append to compute, whose logits
/// the sampler needs (vLLM recomputes the last prompt block for the same reason). Every block that an
/// append fills is registered, so later sequences can share it.
/// </para>
/// <para>
/// Why no copy-on-write: blocks are shared (reference count above one) or kept after release only
/// when full, and a full block is never written again, because a table writes only positions at or
/// after its token count before the append, which lie in its last, partial block or in fresh
/// private ones. Registration happens on append, before the runner writes the block, so a sequence
/// may hit a block whose keys and values are written later in the same step; the runner keeps this
/// safe by writing every sequence's new keys and values of a layer before gathering any for
/// attention.
/// </para>
/// Not thread-safe; owned by the scheduler thread with its <see cref="BlockAllocator"/>.
/// </remarks>
public sealed class BlockTable
{
    private readonly BlockAllocator allocator;
    private readonly List<int> blockIds = new();
    private readonly int[] tailTokens;        // token ids of the last block while it fills; hashed when full
    private readonly BlockHash root;          // the parent of the first block: Root, or a hash of the sequence's images
    private BlockHash lastFullBlockHash = BlockHash.Root;

    /// <summary>Creates an empty table whose blocks come from <paramref name="allocator"/>.</summary>
    public BlockTable(BlockAllocator allocator)
        : this(allocator, ReadOnlySpan<byte>.Empty)
    {
    }

    /// <summary>
    /// Creates an empty table whose prefix-cache keys also depend on <paramref name="prefixKey"/> (e.g. the bytes of a
    /// request's images), so its blocks are shared only with sequences of the same key; an empty key is plain text.
    /// </summary>
    public BlockTable(BlockAllocator allocator, ReadOnlySpan<byte> prefixKey)
    {
        this.allocator = allocator ?? throw new ArgumentNullException(nameof(allocator));
        tailTokens = new int[allocator.BlockSize];
        root = prefixKey.IsEmpty ? BlockHash.Root : BlockHash.RootOf(prefixKey);
        lastFullBlockHash = root;
    }

    /// <summary>Tokens per block.</summary>
    public int BlockSize => allocator.BlockSize;

    /// <summary>The sequence's blocks in position order.</summary>
    public IReadOnlyList<int> BlockIds => blockIds;

    /// <summary>Tokens appended so far.</summary>
    public int TokenCount { get; private set; }

    /// <summary>Leading tokens whose keys and values came from the prefix cache: the runner computes positions from here on.</summary>
    public int CachedTokenCount { get; private set; }

    /// <summary>New blocks an append of <paramref name="tokenCount"/> tokens needs at most (fewer when prompt blocks hit the prefix cache).</summary>
    public int BlocksNeeded(int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenCount);
        return (int)((TokenCount + (long)tokenCount + BlockSize - 1) / BlockSize) - blockIds.Count;
    }

    /// <summary>Whether the pool has room to append <paramref name="tokenCount"/> tokens now, assuming no prefix cache hit.</summary>
    public bool CanAppend(int tokenCount) => BlocksNeeded(tokenCount) <= allocator.FreeBlockCount;

    /// <summary>Appends <paramref name="tokens"/>, sharing cached prompt blocks and allocating the rest.</summary>
    /// <returns>False, changing nothing, when the pool lacks the blocks (<see cref="CanAppend"/> is false).</returns>
    public bool TryAppend(ReadOnlySpan<int> tokens)
    {
        // Enough blocks even if nothing hits: a hit takes at most one free block (a cached free one)
        // and only before the first allocation, whose eviction then cannot undo it.
        if (!CanAppend(tokens.Length)) return false;
        int i = 0;
        while (i < tokens.Length)
        {
            int offset = TokenCount % BlockSize;
            if (offset == 0)
            {
                if (allocator.PrefixCachingEnabled && CachedTokenCount == TokenCount && tokens.Length - i > BlockSize)
                {
                    var hash = BlockHash.Of(lastFullBlockHash, tokens.Slice(i, BlockSize));
                    if (allocator.TryReuseCached(hash, out int cached))
                    {
                        blockIds.Add(cached);
                        lastFullBlockHash = hash;
                        TokenCount += BlockSize;
                        CachedTokenCount += BlockSize;
                        i += BlockSize;
                        continue;
                    }
                }
                blockIds.Add(allocator.Allocate()); // cannot fail: CanAppend counted this block
            }
            int take = Math.Min(BlockSize - offset, tokens.Length - i);
            tokens.Slice(i, take).CopyTo(tailTokens.AsSpan(offset));
            TokenCount += take;
            i += take;
            if (allocator.PrefixCachingEnabled && TokenCount % BlockSize == 0)
            {
                lastFullBlockHash = BlockHash.Of(lastFullBlockHash, tailTokens);
                allocator.Register(blockIds[^1], lastFullBlockHash);
            }
        }
        return true;
    }

    /// <summary>Appends <paramref name="tokens"/> (see <see cref="TryAppend"/>).</summary>
    /// <exception cref="KvCacheFullException">The pool lacks the blocks; nothing was appended.</exception>
    public void Append(ReadOnlySpan<int> tokens)
    {
        if (!TryAppend(tokens)) throw new KvCacheFullException(BlocksNeeded(tokens.Length), allocator.FreeBlockCount, allocator.NumBlocks);
    }

    /// <summary>Gives every block back to the allocator and empties the table, which can then be reused.</summary>
    public void Release()
    {
        // Last block first: when these become cached free, the tail (least likely to be shared) is evicted first (vLLM).
        for (int b = blockIds.Count - 1; b >= 0; b--) allocator.Free(blockIds[b]);
        blockIds.Clear();
        TokenCount = 0;
        CachedTokenCount = 0;
        lastFullBlockHash = root;
    }
}
