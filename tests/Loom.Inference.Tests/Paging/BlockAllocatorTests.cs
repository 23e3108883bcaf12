using Loom.Inference.Paging;

namespace Loom.Inference.Tests.Paging;

public class BlockAllocatorTests
{
    [Fact]
    public void AllocatesEveryBlockOnceThenRefuses()
    {
        var allocator = new BlockAllocator(numBlocks: 4, blockSize: 16, enablePrefixCaching: true);
        var ids = Enumerable.Range(0, 4).Select(_ => allocator.Allocate()).ToList();
        allocator.CheckInvariants();

        Assert.Equal(new[] { 0, 1, 2, 3 }, ids);
        Assert.All(ids, id => Assert.Equal(1, allocator.RefCount(id)));
        Assert.Equal(0, allocator.FreeBlockCount);
        Assert.Equal(new KvBlockUsage(InUse: 4, CachedFree: 0, Free: 0), allocator.Usage);
        Assert.False(allocator.TryAllocate(out int none));
        Assert.Equal(-1, none);
        var full = Assert.Throws<KvCacheFullException>(() => allocator.Allocate());
        Assert.StartsWith("KV cache full: 1 blocks needed, 0 of 4 free", full.Message);
        allocator.CheckInvariants();
    }

    [Fact]
    public void FreeReturnsABlockAndRefusesADoubleFree()
    {
        var allocator = new BlockAllocator(3, 16, enablePrefixCaching: true);
        int a = allocator.Allocate();
        int b = allocator.Allocate();
        allocator.Free(a);
        allocator.CheckInvariants();

        Assert.Equal(0, allocator.RefCount(a));
        Assert.Equal(1, allocator.RefCount(b));
        Assert.Equal(new KvBlockUsage(1, 0, 2), allocator.Usage);
        Assert.Contains("already free", Assert.Throws<InvalidOperationException>(() => allocator.Free(a)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Free(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.RefCount(-1));
        Assert.Equal(a, allocator.Allocate()); // the freed block is handed out again
        allocator.CheckInvariants();
    }

    [Fact]
    public void InvalidPoolsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockAllocator(0, 16, true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockAllocator(4, 0, true));
    }

    [Fact]
    public void CachedFreeBlocksAreEvictedLeastRecentlyFreedFirstAndOnlyWhenNeeded()
    {
        var allocator = new BlockAllocator(6, 4, enablePrefixCaching: true);
        int[] prompt = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
        var first = new BlockTable(allocator);
        first.Append(prompt);                              // blocks 0 and 1 full (registered), 2 partial
        Assert.Equal(new[] { 0, 1, 2 }, first.BlockIds);
        first.Release();                                   // freed last-first: 2 -> free, 1 then 0 -> cached free
        allocator.CheckInvariants();
        Assert.Equal(new KvBlockUsage(InUse: 0, CachedFree: 2, Free: 4), allocator.Usage);
        Assert.Equal(6, allocator.FreeBlockCount);

        // Plain free blocks go first: the cache survives while there is room.
        var others = Enumerable.Range(0, 4).Select(_ => allocator.Allocate()).ToList();
        allocator.CheckInvariants();
        Assert.DoesNotContain(0, others);
        Assert.DoesNotContain(1, others);
        Assert.Equal(0, allocator.Stats.EvictedBlocks);
        Assert.Equal(new KvBlockUsage(4, 2, 0), allocator.Usage);

        // Now the pool needs space: block 1, freed before block 0, is evicted.
        others.Add(allocator.Allocate());
        allocator.CheckInvariants();
        Assert.Equal(1, others[^1]);
        Assert.Equal(1, allocator.Stats.EvictedBlocks);
        Assert.Equal(new KvBlockUsage(5, 1, 0), allocator.Usage);
        foreach (int id in others) allocator.Free(id);
        allocator.CheckInvariants();

        // The surviving first block still hits; the evicted second one is computed again.
        var second = new BlockTable(allocator);
        second.Append(prompt);
        allocator.CheckInvariants();
        Assert.Equal(0, second.BlockIds[0]);
        Assert.Equal(4, second.CachedTokenCount);
        Assert.Equal(new PrefixCacheStats(LookedUpBlocks: 3, HitBlocks: 1, HitTokens: 4, EvictedBlocks: 1), allocator.Stats);
    }

    [Fact]
    public void AHitMovesACachedBlockBehindTheOthersInEvictionOrder()
    {
        var allocator = new BlockAllocator(4, 2, enablePrefixCaching: true);
        var a = new BlockTable(allocator);
        a.Append(new[] { 1, 2, 3 });  // block 0 = [1, 2] registered, block 1 partial
        var b = new BlockTable(allocator);
        b.Append(new[] { 7, 8, 9 });  // block 2 = [7, 8] registered, block 3 partial
        a.Release();                  // cached free: [0]
        b.Release();                  // cached free: [0, 2]
        var c = new BlockTable(allocator);
        c.Append(new[] { 1, 2, 5 });  // hits block 0, takes a free block for the tail
        Assert.Equal(0, c.BlockIds[0]);
        c.Release();                  // cached free: [2, 0]: block 0 is now the most recently freed
        allocator.CheckInvariants();

        var taken = Enumerable.Range(0, 3).Select(_ => allocator.Allocate()).ToList();
        Assert.Equal(2, taken[^1]);   // two plain free blocks, then the least recently freed cached one
        Assert.Equal(new KvBlockUsage(3, 1, 0), allocator.Usage);
        allocator.CheckInvariants();
    }
}
