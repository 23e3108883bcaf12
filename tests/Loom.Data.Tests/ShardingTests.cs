namespace Loom.Data.Tests;

/// <summary>Deterministic, resumable and rank-sharded batch order: LmBatcher, PackedBatcher and MixtureSampler.</summary>
public class ShardingTests
{
    private static int[] Lengths(int count, int max, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => random.Next(0, max + 1))];
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void LmBatcherRanksPartitionAnEpochExactly(int worldSize)
    {
        var tokens = new TokenStream([.. Enumerable.Range(0, 16 * 60 + 1)]); // 60 rows of T = 16, no slack
        const int batch = 2;
        var ranks = Enumerable.Range(0, worldSize).Select(r => new LmBatcher(tokens, 16, batch, seed: 5, rank: r, worldSize: worldSize)).ToArray();
        Assert.Equal(60, ranks[0].RowCount);
        var seen = new List<int>();
        // 60 rows over W ranks of B rows per step: 60 / (W * B) steps cover epoch 0.
        for (long step = 0; step < 60 / (worldSize * batch); step++)
            foreach (var rank in ranks)
                for (int b = 0; b < batch; b++)
                {
                    var row = rank.RowAt(step, b);
                    Assert.Equal(0, row.Epoch);
                    seen.Add(row.Row);
                }
        Assert.Equal(Enumerable.Range(0, 60), seen.Order());
    }

    [Fact]
    public void LmBatcherWithOneRankIsUnchanged()
    {
        var tokens = new TokenStream([.. Enumerable.Range(0, 5000)]);
        var plain = new LmBatcher(tokens, 32, 4, seed: 9);
        var sharded = new LmBatcher(tokens, 32, 4, seed: 9, rank: 0, worldSize: 1);
        for (long step = 0; step < 50; step++)
            for (int b = 0; b < 4; b++)
                Assert.Equal(plain.RowAt(step, b), sharded.RowAt(step, b));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void PackedBatcherRanksPartitionAnEpochExactly(int worldSize)
    {
        int[] lengths = Lengths(500, 40, seed: 1);
        var ranks = Enumerable.Range(0, worldSize).Select(r => new PackedBatcher(lengths, 64, 4, seed: 3, rank: r, worldSize: worldSize)).ToArray();
        var seen = ranks.SelectMany(r => r.EpochRows(0).SelectMany(row => row)).ToList();
        var nonEmpty = Enumerable.Range(0, lengths.Length).Where(i => lengths[i] > 0);
        Assert.Equal(nonEmpty, seen.Order());
        // The same holds for a later epoch, in another order.
        var epoch3 = ranks.SelectMany(r => r.EpochRows(3).SelectMany(row => row)).ToList();
        Assert.Equal(nonEmpty, epoch3.Order());
        Assert.NotEqual(seen, epoch3);
    }

    [Fact]
    public void PackedRowsFitAndAreFilledGreedily()
    {
        int[] lengths = Lengths(300, 50, seed: 2);
        var batcher = new PackedBatcher(lengths, 64, 8, seed: 11);
        var rows = batcher.EpochRows(0);
        for (int i = 0; i < rows.Count; i++)
        {
            int used = rows[i].Sum(e => lengths[e]);
            Assert.InRange(used, 1, 64);
            // Next-fit: the next row's first example did not fit in this row's space.
            if (i + 1 < rows.Count) Assert.True(used + lengths[rows[i + 1][0]] > 64);
        }
    }

    [Fact]
    public void PackedBatchIsAPureFunctionOfSeedAndStep()
    {
        int[] lengths = Lengths(200, 30, seed: 4);
        var first = new PackedBatcher(lengths, 64, 4, seed: 21);
        var straight = Enumerable.Range(0, 100).Select(k => first.Batch(k)).ToList(); // crosses several epochs
        // A fresh batcher asked for step k first (as a run resumed at k would be) gives the same rows.
        foreach (int k in new[] { 99, 57, 13, 0 })
        {
            var resumed = new PackedBatcher(lengths, 64, 4, seed: 21);
            Assert.Equal(straight[k], resumed.Batch(k));
        }
        var otherSeed = new PackedBatcher(lengths, 64, 4, seed: 22);
        Assert.NotEqual(straight[0], otherSeed.Batch(0));
    }

    [Fact]
    public void PackedBatcherClipsLongExamplesAndRefusesTooFewExamples()
    {
        var batcher = new PackedBatcher([500, 3, 0, 7], 64, 1, seed: 1);
        Assert.All(batcher.EpochRows(0), row => Assert.DoesNotContain(2, row)); // the empty example is left out
        Assert.Single(batcher.EpochRows(0), row => row.Contains(0) && row.Count == 1); // 500 counts as 64: a row of its own
        var e = Assert.Throws<ArgumentException>(() => new PackedBatcher([5, 0], 64, 1, seed: 1, rank: 0, worldSize: 2));
        Assert.Contains("fewer than the 2 ranks", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PackedBatcher([5], 64, 1, seed: 1, rank: 1, worldSize: 1));
    }

    [Fact]
    public void MixtureSamplerHitsItsRatesAndIsDeterministic()
    {
        var sampler = new MixtureSampler([1.0, 3.0, 6.0], seed: 8);
        var counts = new int[3];
        const int n = 100_000;
        for (long s = 0; s < n; s++) counts[sampler.ComponentAt(s)]++;
        Assert.InRange(counts[0] / (double)n, 0.095, 0.105);
        Assert.InRange(counts[1] / (double)n, 0.295, 0.305);
        Assert.InRange(counts[2] / (double)n, 0.595, 0.605);
        var again = new MixtureSampler([1.0, 3.0, 6.0], seed: 8);
        Assert.Equal(sampler.ComponentAt(12345), again.ComponentAt(12345));
        Assert.Throws<ArgumentException>(() => new MixtureSampler([1.0, 0.0], seed: 1));
    }
}
