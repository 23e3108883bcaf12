using Loom.Inference.Paging;

namespace Loom.Inference.Tests.Paging;

public class BlockTableTests
{
    private static int[] Tokens(int start, int count) => Enumerable.Range(start, count).ToArray();

    [Fact]
    public void GrowsOneBlockAtEachBoundary()
    {
        var allocator = new BlockAllocator(8, 4, enablePrefixCaching: true);
        var table = new BlockTable(allocator);
        for (int n = 1; n <= 10; n++)
        {
            Assert.Equal(n % 4 == 1 ? 1 : 0, table.BlocksNeeded(1));
            table.Append(new[] { 100 + n });
            allocator.CheckInvariants();
            Assert.Equal(n, table.TokenCount);
            Assert.Equal((n + 3) / 4, table.BlockIds.Count);
        }
        Assert.Equal(new[] { 0, 1, 2 }, table.BlockIds);
        Assert.Equal(0, table.CachedTokenCount);
        Assert.Equal(0, table.BlocksNeeded(2));  // positions 10..11 fill block 2
        Assert.Equal(1, table.BlocksNeeded(6));  // positions 10..15: block 2, then block 3
        Assert.Equal(2, table.BlocksNeeded(7));  // position 16 starts block 4

        table.Append(Tokens(0, 7));              // 17 tokens across a prefill that crosses two boundaries
        allocator.CheckInvariants();
        Assert.Equal(17, table.TokenCount);
        Assert.Equal(5, table.BlockIds.Count);
        Assert.Equal(5, table.BlockIds.Distinct().Count());
        Assert.Equal(new KvBlockUsage(5, 0, 3), allocator.Usage);
    }

    [Fact]
    public void RefusesAnAppendThatDoesNotFitAndChangesNothing()
    {
        var allocator = new BlockAllocator(3, 4, enablePrefixCaching: true);
        var table = new BlockTable(allocator);
        table.Append(Tokens(0, 6));
        Assert.True(table.CanAppend(6));       // 12 tokens = the 3 blocks
        Assert.False(table.CanAppend(7));
        Assert.False(table.TryAppend(Tokens(6, 7)));
        Assert.Equal(6, table.TokenCount);
        Assert.Equal(2, table.BlockIds.Count);
        var full = Assert.Throws<KvCacheFullException>(() => table.Append(Tokens(6, 7)));
        Assert.Equal((2, 1), (full.BlocksNeeded, full.BlocksFree));
        Assert.Equal(6, table.TokenCount);
        allocator.CheckInvariants();
    }

    [Fact]
    public void ReleaseFreesEveryBlockAndTheTableCanBeReused()
    {
        var allocator = new BlockAllocator(4, 4, enablePrefixCaching: false);
        var table = new BlockTable(allocator);
        table.Append(Tokens(0, 13));
        Assert.Equal(0, allocator.FreeBlockCount);
        table.Release();
        allocator.CheckInvariants();
        Assert.Equal((0, 0), (table.TokenCount, table.BlockIds.Count));
        Assert.Equal(new KvBlockUsage(0, 0, 4), allocator.Usage); // prefix caching off: nothing is kept
        table.Append(Tokens(0, 13));                               // the same prompt: no cache, four fresh blocks
        Assert.Equal(0, table.CachedTokenCount);
        Assert.Equal(new PrefixCacheStats(0, 0, 0, 0), allocator.Stats);
        table.Release();
        table.Release();                                           // releasing an empty table does nothing
        allocator.CheckInvariants();
    }

    [Fact]
    public void SequencesWithTheSamePromptShareItsFullBlocks()
    {
        var allocator = new BlockAllocator(8, 16, enablePrefixCaching: true);
        int[] prompt = Tokens(1000, 40);
        var a = new BlockTable(allocator);
        a.Append(prompt);
        var b = new BlockTable(allocator);
        b.Append(prompt);
        allocator.CheckInvariants();

        Assert.Equal(a.BlockIds.Take(2), b.BlockIds.Take(2));      // the two full blocks are shared
        Assert.NotEqual(a.BlockIds[2], b.BlockIds[2]);             // the partial third is private
        Assert.Equal(new[] { 2, 2, 1 }, a.BlockIds.Select(allocator.RefCount));
        Assert.Equal(new[] { 2, 2, 1 }, b.BlockIds.Select(allocator.RefCount));
        Assert.Equal(0, a.CachedTokenCount);
        Assert.Equal(32, b.CachedTokenCount);                      // b computes only positions 32..39
        Assert.Equal(2, allocator.Stats.HitBlocks);
        Assert.Equal(32, allocator.Stats.HitTokens);
        Assert.Equal(new KvBlockUsage(4, 0, 4), allocator.Usage);

        // Decoding appends to private tails; the shared blocks are never touched.
        a.Append(new[] { 1 });
        b.Append(new[] { 2 });
        Assert.Equal(new KvBlockUsage(4, 0, 4), allocator.Usage);

        a.Release();
        Assert.Equal(new[] { 1, 1, 1 }, b.BlockIds.Select(allocator.RefCount));
        b.Release();
        allocator.CheckInvariants();
        Assert.Equal(new KvBlockUsage(0, 2, 6), allocator.Usage); // the two full prompt blocks stay cached

        var c = new BlockTable(allocator);
        c.Append(prompt);                                          // after both finished, still a hit
        Assert.Equal(32, c.CachedTokenCount);
        Assert.Equal(4, allocator.Stats.HitBlocks);
        allocator.CheckInvariants();
    }

    [Fact]
    public void AHitNeedsTheWholePrefixNotJustTheSameBlock()
    {
        var allocator = new BlockAllocator(16, 4, enablePrefixCaching: true);
        var a = new BlockTable(allocator);
        a.Append(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 });
        var sameFirstBlock = new BlockTable(allocator);
        sameFirstBlock.Append(new[] { 1, 2, 3, 4, 0, 6, 7, 8, 9 });
        Assert.Equal(4, sameFirstBlock.CachedTokenCount);
        Assert.Equal(a.BlockIds[0], sameFirstBlock.BlockIds[0]);

        // c's first block is b's and its second block's tokens are a's, but a's keys for them
        // were computed after another first block: no hit.
        var b = new BlockTable(allocator);
        b.Append(new[] { 0, 2, 3, 4, 10, 11, 12, 13, 9 });
        var c = new BlockTable(allocator);
        c.Append(new[] { 0, 2, 3, 4, 5, 6, 7, 8, 9 });
        Assert.Equal(4, c.CachedTokenCount);
        Assert.Equal(b.BlockIds[0], c.BlockIds[0]);
        Assert.DoesNotContain(a.BlockIds[1], c.BlockIds);
        allocator.CheckInvariants();
    }

    [Fact]
    public void AFullyCachedPromptStillLeavesItsLastBlockToCompute()
    {
        var allocator = new BlockAllocator(8, 16, enablePrefixCaching: true);
        int[] prompt = Tokens(0, 32);
        var a = new BlockTable(allocator);
        a.Append(prompt);
        var b = new BlockTable(allocator);
        b.Append(prompt);
        allocator.CheckInvariants();
        Assert.Equal(16, b.CachedTokenCount);                      // the last block is computed for the logits
        Assert.Equal(a.BlockIds[0], b.BlockIds[0]);
        Assert.NotEqual(a.BlockIds[1], b.BlockIds[1]);
        Assert.Equal(1, allocator.RefCount(b.BlockIds[1]));

        // Same contents twice: the copy stays private and is not kept once freed.
        b.Release();
        allocator.CheckInvariants();
        Assert.Equal(new KvBlockUsage(2, 0, 6), allocator.Usage);
    }

    private sealed class Request(BlockTable table, int[] prompt, int decodeSteps, int cancelAfter)
    {
        public BlockTable Table { get; } = table;
        public List<int> Tokens { get; } = new();
        public List<long> Keys { get; } = new();       // a stand-in for each position's keys: a function of the whole prefix, as in a model
        public int[] Prompt { get; } = prompt;
        public int DecodeSteps { get; } = decodeSteps;
        public int CancelAfter { get; } = cancelAfter; // decode steps before a cancellation, or -1
        public int Steps { get; set; }
    }

    [Fact]
    public void AThousandRandomRequestsWithCancellationsLeakNoBlock()
    {
        const int blockSize = 4, numBlocks = 20, requests = 1000; // 20 blocks hold the longest request (76 tokens) but not six at once
        var rng = new Random(20240611);
        var allocator = new BlockAllocator(numBlocks, blockSize, enablePrefixCaching: true);
        var written = new long[numBlocks, blockSize]; // what the "runner" wrote at each slot
        int[] RandomTokens(int count) => Enumerable.Range(0, count).Select(_ => rng.Next(100)).ToArray();
        var prefixes = Enumerable.Range(0, 4).Select(_ => RandomTokens(rng.Next(3, 14))).ToArray();
        var active = new List<Request>();
        int admitted = 0, finished = 0, cancelled = 0, preempted = 0;

        void Check()
        {
            allocator.CheckInvariants();
            var holders = new int[numBlocks];
            foreach (var r in active)
            {
                Assert.Equal(r.Tokens.Count, r.Table.TokenCount);
                Assert.Equal((r.Tokens.Count + blockSize - 1) / blockSize, r.Table.BlockIds.Count);
                foreach (int id in r.Table.BlockIds) holders[id]++;
                for (int p = 0; p < r.Tokens.Count; p++) // every position reads the keys of this sequence's own prefix
                    Assert.Equal(r.Keys[p], written[r.Table.BlockIds[p / blockSize], p % blockSize]);
            }
            for (int id = 0; id < numBlocks; id++) Assert.Equal(holders[id], allocator.RefCount(id));
        }

        void Release(Request r)
        {
            r.Table.Release();
            active.Remove(r);
            Check();
        }

        // Appends like a scheduler: preempts other requests until the tokens fit, then writes the new positions like a runner.
        void AppendAndWrite(Request r, int[] tokens)
        {
            while (!r.Table.TryAppend(tokens))
            {
                Assert.Equal(r.Tokens.Count, r.Table.TokenCount); // a refused append changed nothing
                var others = active.Where(o => o != r).ToList();
                Assert.NotEmpty(others);
                Release(others[rng.Next(others.Count)]);
                preempted++;
            }
            int firstComputed = Math.Max(r.Tokens.Count, r.Table.CachedTokenCount);
            foreach (int token in tokens)
            {
                r.Keys.Add(unchecked((r.Keys.Count == 0 ? 17 : r.Keys[^1]) * 1_000_003 + token));
                r.Tokens.Add(token);
            }
            for (int p = firstComputed; p < r.Tokens.Count; p++)
            {
                int block = r.Table.BlockIds[p / blockSize];
                Assert.Equal(1, allocator.RefCount(block)); // only private blocks are ever written
                written[block, p % blockSize] = r.Keys[p];
            }
        }

        while (admitted < requests || active.Count > 0)
        {
            if (admitted < requests && active.Count < 6 && rng.Next(2) == 0)
            {
                int[] prefix = rng.Next(4) == 0 ? [] : prefixes[rng.Next(prefixes.Length)];
                var r = new Request(new BlockTable(allocator), [.. prefix, .. RandomTokens(rng.Next(1, 9))],
                    decodeSteps: rng.Next(0, 12), cancelAfter: rng.Next(3) == 0 ? rng.Next(0, 12) : -1);
                admitted++;
                if (rng.Next(8) == 0) // cancelled while waiting, before it got any block
                {
                    cancelled++;
                    continue;
                }
                AppendAndWrite(r, r.Prompt);
                active.Add(r);
                Check();
                continue;
            }
            if (active.Count == 0) continue;
            var next = active[rng.Next(active.Count)];
            if (next.Steps == next.CancelAfter)
            {
                Release(next);
                cancelled++;
            }
            else if (next.Steps == next.DecodeSteps)
            {
                Release(next);
                finished++;
            }
            else
            {
                AppendAndWrite(next, RandomTokens(rng.Next(4) == 0 ? rng.Next(2, 6) : 1)); // a decode step, sometimes a few (chunked) tokens
                next.Steps++;
                Check();
            }
        }

        // Every path was taken: sharing, eviction, preemption, cancellation.
        Assert.Equal(requests, admitted);
        Assert.True(finished > 100 && cancelled > 100 && preempted > 10, $"hits {allocator.Stats.HitBlocks}, evictions {allocator.Stats.EvictedBlocks}, finished {finished}, cancelled {cancelled}, preempted {preempted}");
        Assert.True(allocator.Stats.HitBlocks > 100, $"{allocator.Stats.HitBlocks} prefix cache hits");
        Assert.True(allocator.Stats.EvictedBlocks > 100, $"{allocator.Stats.EvictedBlocks} evictions");

        // No leak: every block is free or cached free, with no holder.
        Assert.Equal(0, allocator.Usage.InUse);
        Assert.Equal(numBlocks, allocator.Usage.Free + allocator.Usage.CachedFree);
        Assert.All(Enumerable.Range(0, numBlocks), id => Assert.Equal(0, allocator.RefCount(id)));
        var everything = new BlockTable(allocator);
        everything.Append(RandomTokens(numBlocks * blockSize)); // the whole pool can be taken again
        Assert.Equal(0, allocator.FreeBlockCount);
        everything.Release();
        allocator.CheckInvariants();
    }
}
