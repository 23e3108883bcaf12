using Loom.Planning;

namespace Loom.Planning.Tests;

public sealed class ParetoAndPaperTests
{
    private static readonly Layout L = Layout.All[0];

    [Fact]
    public void FrontierKeepsOnlyUndominatedPoints()
    {
        ParetoPoint P(double latency, double mfu) => new(L, 1, latency, mfu);
        var frontier = ParetoFrontier.Select([P(1, 0.1), P(2, 0.3), P(2, 0.2), P(3, 0.25), P(4, 0.5), P(0.5, 0.05), P(5, 0.5), P(double.PositiveInfinity, 0.9)]);
        Assert.Equal([(0.5, 0.05), (1, 0.1), (2, 0.3), (4, 0.5)], frontier.Select(p => (p.LatencySeconds, p.Mfu)));
    }

    [Fact]
    public void SweepCoversPowersOfTwoAndOnlyFeasiblePoints()
    {
        var model = new InferenceCostModel(new CostModelOptions(CostModelTests.Toy, CostModelTests.ToyChip.TopologyFor(4)));
        var points = ParetoFrontier.Sweep(model, b => new InferencePass(b, 1, 0), 8);
        Assert.Equal([1, 2, 4, 8], points.Select(p => p.Batch).Distinct().Order());
        Assert.DoesNotContain(points, p => p.Layout.FeedForward == FeedForwardLayout.WeightGatheredXYZ && p.Batch < 4);
    }

    private static InferenceCostModel Palm(WeightFormat weights) =>
        new(new CostModelOptions(ModelShape.Palm540B, HardwareCatalog.TpuV4.TopologyFor(64)) { Weights = weights });

    [Fact]
    public void Palm540BInt8WeightLoadIsTheRooflineBound()
    {
        // 540.35e9 bytes over 64 chips at 1200 GB/s: 7.04 ms per decode step at the least.
        PassCost c = Palm(WeightFormat.Int8).Evaluate(Layout.Parse("ws2d/batch"), new InferencePass(64, 1, 2048));
        Assert.Equal(540_354_281_472 / 64.0 / 1200e9, c.WeightLoadSeconds, 9);
        // matmuls split over all 64 chips; attention over the batch: one sequence, 2049 keys, per chip
        Assert.Equal((2.0 * ModelShape.Palm540B.MatmulParameters * 64 / 64 + 4.0 * 118 * 48 * 256 * 2049) / 275e12, c.ComputeSeconds, 12);
    }

    [Fact]
    public void TwoDimensionalBeatsOneDimensionalForDecodeOn64Chips()
    {
        // Pope et al. 3.2.2: 2D weight-stationary's traffic falls as 1/sqrt(chips); at 64 chips it is below 1D's.
        var model = Palm(WeightFormat.Int8);
        var pass = new InferencePass(64, 1, 2048);
        Assert.True(model.Evaluate(Layout.Parse("ws2d/batch"), pass).CommunicationSeconds < model.Evaluate(Layout.Parse("ws1d/batch"), pass).CommunicationSeconds);
        Assert.Equal("ws2d/batch", model.Best(pass)!.Layout.Name);
    }

    [Fact]
    public void LargeBatchPrefillPrefersWeightGatheringAndMultiQueryDecodePrefersBatchSharding()
    {
        var model = Palm(WeightFormat.Bf16);
        PassCost prefill = model.Best(new InferencePass(512, 2048, 0))!;
        Assert.StartsWith("wg-", prefill.Layout.Name);
        Assert.InRange(prefill.Mfu, 0.76, 1.0); // the roofline is above the paper's measured 76%
        PassCost decode = model.Best(new InferencePass(256, 1, 2048))!;
        Assert.Equal(AttentionSharding.Batch, decode.Layout.Attention);
    }

    [Fact]
    public void ScalingBookLlama70BOnEightV5eIsMemoryBound()
    {
        // "How to Scale Your Model", serving LLaMA 3-70B: int8 weights and cache, batch 32, 8k context, 8 v5e:
        // (70e9 + 41.9e9 bytes) / (8 · 8.1e11 B/s) ≈ 17 ms.
        var model = new InferenceCostModel(new CostModelOptions(ModelShape.Llama3_70B, HardwareCatalog.TpuV5e.TopologyFor(8)) { Weights = WeightFormat.Int8, KvCacheBytes = 1 });
        PassCost c = model.Best(new InferencePass(32, 1, 8192))!;
        Assert.InRange(c.WeightLoadSeconds + c.KvLoadSeconds, 0.0165, 0.0180);
        Assert.True(c.ComputeSeconds < c.WeightLoadSeconds + c.KvLoadSeconds);
    }
}
