using TorchSharp;

namespace Loom.Data.Tests;

public class LmBatcherTests
{
    /// <summary>A stream whose token at position i is i, so a row's start is visible in its values.</summary>
    private static TokenStream Counting(int length) => new([.. Enumerable.Range(0, length)]);

    private static (long[] Inputs, long[] Targets, long[] Shape) Batch(LmBatcher batcher, long step)
    {
        using var _ = torch.NewDisposeScope();
        var (x, y) = batcher.GetBatch(step);
        Assert.Equal(torch.int64, x.dtype);
        Assert.Equal(torch.int64, y.dtype);
        Assert.Equal(x.shape, y.shape);
        return (x.data<long>().ToArray(), y.data<long>().ToArray(), x.shape);
    }

    [Fact]
    public void BatchIsShapedAndShiftedByOne()
    {
        var batcher = new LmBatcher(Counting(1000), sequenceLength: 16, batchSize: 4, seed: 7);
        var (inputs, targets, shape) = Batch(batcher, 3);
        Assert.Equal([4L, 16L], shape);
        Assert.Equal(64, batcher.TokensPerBatch);
        for (int b = 0; b < 4; b++)
        {
            long start = batcher.RowAt(3, b).Start;
            for (int t = 0; t < 16; t++)
            {
                Assert.Equal(start + t, inputs[b * 16 + t]);
                Assert.Equal(start + t + 1, targets[b * 16 + t]);
            }
        }
    }

    [Fact]
    public void SameSeedAndStepGiveTheSameBatch()
    {
        var a = new LmBatcher(Counting(5000), 32, 8, seed: 42);
        var b = new LmBatcher(Counting(5000), 32, 8, seed: 42);
        foreach (long step in new long[] { 0, 1, 17, 1000 })
        {
            var x = Batch(a, step);
            var y = Batch(b, step);
            Assert.Equal(x.Inputs, y.Inputs);
            Assert.Equal(x.Targets, y.Targets);
        }
    }

    [Fact]
    public void DifferentStepsAndSeedsDiffer()
    {
        var a = new LmBatcher(Counting(5000), 32, 8, seed: 42);
        var c = new LmBatcher(Counting(5000), 32, 8, seed: 43);
        Assert.NotEqual(Batch(a, 0).Inputs, Batch(a, 1).Inputs);
        Assert.NotEqual(Batch(a, 0).Inputs, Batch(c, 0).Inputs);
    }

    [Fact]
    public void BatchComputedFreshEqualsBatchFromASequentialRun()
    {
        var sequential = new LmBatcher(Counting(3000), 10, 7, seed: 9);
        var seen = new List<long[]>();
        for (long step = 0; step <= 120; step++) seen.Add(Batch(sequential, step).Inputs); // crosses several epochs

        foreach (long k in new long[] { 120, 0, 61, 42 }) // a resumed run starts anywhere, in any order
        {
            var fresh = new LmBatcher(Counting(3000), 10, 7, seed: 9);
            Assert.Equal(seen[(int)k], Batch(fresh, k).Inputs);
        }
    }

    [Theory]
    [InlineData(1000, 10, 4)]  // 99 rows: batches straddle epoch boundaries
    [InlineData(1001, 10, 5)]  // 100 rows, an exact number of batches
    [InlineData(12, 11, 3)]    // a single row
    public void EveryRowIsVisitedOncePerEpoch(int length, int t, int b)
    {
        var batcher = new LmBatcher(Counting(length), t, b, seed: 5);
        int rows = batcher.RowCount;
        Assert.Equal((length - 1) / t, rows);
        long samples = 3L * rows;
        var byEpoch = new Dictionary<long, List<int>>();
        var offsets = new Dictionary<long, HashSet<long>>();
        for (long s = 0; s < samples; s++)
        {
            var row = batcher.RowAt(s / b, (int)(s % b));
            Assert.Equal(s / rows, row.Epoch);
            byEpoch.TryAdd(row.Epoch, []);
            byEpoch[row.Epoch].Add(row.Row);
            offsets.TryAdd(row.Epoch, []);
            offsets[row.Epoch].Add(row.Start - (long)row.Row * t);
            Assert.InRange(row.Start + t, t, length - 1); // the row's last target is inside the stream
        }
        Assert.Equal(3, byEpoch.Count);
        foreach (var (_, visited) in byEpoch)
            Assert.Equal(Enumerable.Range(0, rows), visited.Order());
        Assert.All(offsets.Values, o => Assert.Single(o)); // one start offset per epoch
    }

    [Fact]
    public void EpochsUseDifferentOrders()
    {
        var batcher = new LmBatcher(Counting(10_001), 10, 1000, seed: 11); // 1000 rows: one batch per epoch
        var epoch0 = Enumerable.Range(0, 1000).Select(i => batcher.RowAt(0, i).Row).ToArray();
        var epoch1 = Enumerable.Range(0, 1000).Select(i => batcher.RowAt(1, i).Row).ToArray();
        Assert.NotEqual(epoch0, epoch1);
        Assert.NotEqual(Enumerable.Range(0, 1000), epoch0); // actually shuffled
    }

    [Fact]
    public void EvaluationBatchesCoverTheStreamInOrderWithoutOverlap()
    {
        var batcher = new LmBatcher(Counting(1000), 10, 4, seed: 123); // 99 rows: 24 full batches and one of 3
        Assert.Equal(25, batcher.EvaluationBatchCount);
        var starts = new List<long>();
        var shapes = new List<long[]>();
        using (var _ = torch.NewDisposeScope())
        {
            foreach (var (x, y) in batcher.EvaluationBatches(int.MaxValue))
            {
                shapes.Add(x.shape);
                long[] inputs = x.data<long>().ToArray();
                long[] targets = y.data<long>().ToArray();
                for (int r = 0; r < x.shape[0]; r++)
                {
                    starts.Add(inputs[r * 10]);
                    Assert.Equal(inputs[r * 10] + 10, targets[r * 10 + 9]);
                }
            }
        }
        Assert.Equal(Enumerable.Range(0, 99).Select(r => r * 10L), starts);
        Assert.Equal([3L, 10L], shapes[^1]);
        Assert.All(shapes.Take(24), s => Assert.Equal([4L, 10L], s));

        var other = new LmBatcher(Counting(1000), 10, 4, seed: 999);
        using var scope = torch.NewDisposeScope();
        var limited = other.EvaluationBatches(2).Select(p => p.Inputs.data<long>().ToArray()).ToList();
        Assert.Equal(2, limited.Count);
        Assert.Equal(0L, limited[0][0]);
        Assert.Equal(40L, limited[1][0]);
    }

    [Fact]
    public void InvalidArgumentsAreRefusedClearly()
    {
        var stream = Counting(100);
        var t = Assert.Throws<ArgumentOutOfRangeException>(() => new LmBatcher(stream, 0, 4, 1));
        Assert.Contains("sequence length", t.Message);
        var b = Assert.Throws<ArgumentOutOfRangeException>(() => new LmBatcher(stream, 8, -1, 1));
        Assert.Contains("batch size", b.Message);
        var s = Assert.Throws<ArgumentException>(() => new LmBatcher(stream, 100, 4, 1));
        Assert.Contains("100 tokens", s.Message);
        Assert.Contains("101", s.Message);
        var ok = new LmBatcher(stream, 99, 4, 1);
        Assert.Equal(1, ok.RowCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => ok.GetBatch(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ok.RowAt(0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => ok.EvaluationBatches(0));
    }

    [Fact]
    public void CounterRngIsUniformEnoughAndPure()
    {
        ulong key = CounterRng.Key(1, 2, 3);
        Assert.Equal(CounterRng.At(key, 10), CounterRng.At(key, 10));
        Assert.NotEqual(CounterRng.Key(1, 2, 3), CounterRng.Key(1, 2, 4));
        var counts = new int[10];
        for (ulong i = 0; i < 100_000; i++) counts[CounterRng.Below(key, i, 10)]++;
        Assert.All(counts, c => Assert.InRange(c, 9_500, 10_500)); // ~5 standard deviations around 10,000
    }
}
