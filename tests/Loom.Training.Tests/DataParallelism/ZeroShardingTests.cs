using Loom.Distributed;
using Loom.Training.DataParallelism;
using Loom.Training.Optimization;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Tests.DataParallelism;

public sealed class ZeroShardingTests
{
    [Fact]
    public void PartitionDealsTheLargestFirstToTheLeastLoadedRank()
    {
        var owners = ZeroSharding.Partition([10, 40, 30, 20, 5], 2);
        Assert.Equal([0, 0, 1, 1, 0], owners); // 40 → 0, 30 → 1, 20 → 1 (30 < 40), 10 → 0 (40 < 50), 5 → 0 (tie: lowest rank)
        long[] load = new long[2];
        long[] sizes = [10, 40, 30, 20, 5];
        for (int i = 0; i < sizes.Length; i++) load[owners[i]] += sizes[i];
        Assert.Equal(105, load.Sum());
        Assert.Equal([55L, 50L], load);
        Assert.Equal(owners, ZeroSharding.Partition([10, 40, 30, 20, 5], 2)); // deterministic: every rank agrees
        Assert.All(ZeroSharding.Partition([7, 7, 7], 1), o => Assert.Equal(0, o));
    }

    [Fact]
    public void OneRankOwnsEverythingAndClipsByTheGlobalNormAsOneProcessDoes()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(ones(3, 4));
        var b = new Parameter(ones(5));
        a.grad = full(new long[] { 3, 4 }, 2f);
        b.grad = full(new long[] { 5 }, -3f);
        using var zero = new ZeroSharding(new SingleProcessCommunicator(), [("a", a), ("b", b)], 3);
        Assert.Equal(["a", "b"], zero.Owned.Select(p => p.Name));
        var norm = zero.ReduceAndClipGradients(1.0);
        double expected = Math.Sqrt(12 * 4 + 5 * 9);
        Assert.Equal(expected, norm.item<float>(), 4);
        Assert.Equal(2 / (expected + 1e-6), a.grad!.max().item<float>(), 5);
        zero.AfterStep(); // everything is owned: nothing is freed
        Assert.Equal([3L, 4L], a.shape);
        Assert.Equal(12 * 4 + 5 * 4, zero.LastGradientBytes);
    }

    [Fact]
    public void ARankLoadsOnlyItsShareOfACompleteOptimizerStateAndRejectsUnknownKeys()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(ones(2, 2));
        var b = new Parameter(ones(3));
        using var full = new AdamW([("a", a), ("b", b)]);
        var state = full.StateTensors().ToDictionary(p => p.Key, p => p.Value.add(1));
        using var sharded = new ShardedOptimizer(new AdamW([("b", b)]), [("a", a), ("b", b)], ["b"]);
        sharded.LoadState(state, 7);
        Assert.Equal(7, sharded.StepCount);
        Assert.Equal(["b.exp_avg", "b.exp_avg_sq"], sharded.StateTensors().Keys.Order());
        Assert.Equal(1f, sharded.StateTensors()["b.exp_avg"].max().item<float>());
        state["c.exp_avg"] = zeros(1);
        Assert.Contains("unexpected optimizer state key 'c.exp_avg'", Assert.Throws<ArgumentException>(() => sharded.LoadState(state, 7)).Message);
    }

    [Fact]
    public void AStageOutsideOneToThreeIsRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ZeroSharding(new SingleProcessCommunicator(), [], 4));
        Assert.Contains("pass 1, 2 or 3", e.Message);
    }
}
