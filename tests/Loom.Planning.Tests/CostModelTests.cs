using Loom.Planning;

namespace Loom.Planning.Tests;

/// <summary>The cost model's formulas on a toy model and toy hardware small enough to compute by hand.</summary>
public sealed class CostModelTests
{
    // 2 layers, E 8, 4 heads of 2 (multi-query), F 16 (not gated), vocab 10, parallel block, shared embeddings.
    internal static readonly ModelShape Toy = new("toy", 2, 8, 4, 1, 2, 16, 10, parallelBlock: true, gatedMlp: false);

    // 100 FLOP/s, 10 B/s of HBM, 1 MB of it, a 2D torus with 1 B/s per axis (2 B/s per chip in all).
    internal static readonly HardwareSpec ToyChip = new("toy-tpu", 100, 200, 10, 1e6, InterconnectKind.Torus, 2, 1, 0, 0, 1024);

    private static InferenceCostModel Model(bool overlap = false, ModelShape? shape = null, HardwareSpec? chip = null, int chips = 4) =>
        new(new CostModelOptions(shape ?? Toy, (chip ?? ToyChip).TopologyFor(chips)) { OverlapCommunication = overlap });

    [Fact]
    public void ParameterAndFlopCountsMatchHandComputation()
    {
        // attention 8·(2·8 + 2·2) = 160, MLP 2·8·16 = 256, block 416; matmuls 2·416 + 10·8 = 912
        Assert.Equal(160, Toy.AttentionParameters);
        Assert.Equal(256, Toy.MlpParameters);
        Assert.Equal(912, Toy.MatmulParameters);
        Assert.Equal(912, Toy.StoredParameters);
        // 2·912 + 4·layers·heads·d_head·keys = 1824 + 64·5
        Assert.Equal(2144, Toy.FlopsPerToken(5));
        Assert.Equal(8, Toy.KvElementsPerToken); // 2 · 2 layers · 1 kv head · 2
    }

    [Fact]
    public void Palm540BHasPaLMsParameterCount()
    {
        // Chowdhery et al. 2022: 540.35B parameters.
        Assert.Equal(540_354_281_472, ModelShape.Palm540B.StoredParameters);
        // LLaMA 3 70B: 70.6B with its untied 128k embeddings.
        Assert.InRange(ModelShape.Llama3_70B.StoredParameters, 70.5e9, 70.6e9);
    }

    [Fact]
    public void OneDimensionalWeightStationaryDecodeStep()
    {
        // B=2 sequences, one new token each after 3 cached, on 2x2 toy chips, attention over the batch.
        PassCost c = Model().Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch), new InferencePass(2, 1, 3));
        Assert.True(c.Feasible, c.Reason);
        // compute: matmuls 2·912·2 / 4 chips = 912; attention 64·2·(3 + 1) = 512, half of it on one chip (batch 2 over 4 chips)
        Assert.Equal((912 + 256) / 100.0, c.ComputeSeconds, 12);
        // weights: 2 layers · 416 · 2 bytes / 4 + 80 · 2 / 4 = 456 bytes at 10 B/s
        Assert.Equal(456, c.WeightBytesPerChip);
        Assert.Equal(45.6, c.WeightLoadSeconds, 12);
        // KV cache: 8 elements · 2 sequences · 4 tokens · 2 bytes, half per chip = 64 bytes
        Assert.Equal(64, c.KvBytesPerChip);
        Assert.Equal(6.4, c.KvLoadSeconds, 12);
        // comm per layer: 2 · (B·E·2 = 32 bytes)·(3/4) / 2 B/s = 24 s; all-to-all in (2·12·2/4 = 12 B) and out (8 B): (12 + 8)·(3/4)/2 = 7.5 s
        Assert.Equal(2 * (24 + 7.5), c.CommunicationSeconds, 12);
        Assert.Equal(2 * (48 + 15), c.CommunicationBytesPerChip, 12);
        // latency = max(compute, memory) + communication (the paper's no-overlap accounting)
        Assert.Equal(52 + 63, c.LatencySeconds, 9);
        Assert.Equal((3648 + 512) / (4 * 100.0 * 115), c.Mfu, 12);
    }

    [Fact]
    public void OverlapTakesTheLargestTermInstead()
    {
        PassCost c = Model(overlap: true).Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch), new InferencePass(2, 1, 3));
        Assert.Equal(63, c.LatencySeconds, 9);
    }

    [Fact]
    public void CommunicationVolumePerLayout()
    {
        var pass = new InferencePass(2, 1, 3);
        var model = Model();
        // 1D: all-gather and reduce-scatter of B·L·E·2 = 32 bytes, each chip receiving 3/4 of it, per layer
        Assert.Equal(2 * 2 * 32 * 0.75, model.Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Heads), pass).CommunicationBytesPerChip, 12);
        // 2D (E over 2, F over 2): 2 · (32/2)·(1/2) over F's axis + (F_in 28 + F_out 24)·B·2/2 · (1/2) over E's axis
        Assert.Equal(2 * (2 * 16 * 0.5 + (56 + 48) * 0.5), model.Evaluate(new Layout(FeedForwardLayout.WeightStationary2D, AttentionSharding.Heads), pass).CommunicationBytesPerChip, 12);
        // XYZ weight-gathered (batch 4 over 4 chips): the block's 416 weights · 2 bytes gathered, 3/4 received, no activation traffic
        PassCost gathered = model.Evaluate(new Layout(FeedForwardLayout.WeightGatheredXYZ, AttentionSharding.Heads), new InferencePass(4, 1, 3));
        Assert.Equal(2 * 832 * 0.75, gathered.CommunicationBytesPerChip, 12);
        Assert.Equal(2 * 832 * 0.75 / 2, gathered.CommunicationSeconds, 12);
        // every chip then multiplies by (and reads) the whole block's weights
        Assert.Equal((2 * 416 * 2 + 80 * 2 / 4.0) / 10, gathered.WeightLoadSeconds, 12);
    }

    [Fact]
    public void MultiQueryCacheIsReplicatedOverHeadsButSplitOverBatch()
    {
        var pass = new InferencePass(4, 1, 100);
        var model = Model();
        PassCost heads = model.Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Heads), pass);
        PassCost batch = model.Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch), pass);
        Assert.Equal(8.0 * 4 * 101 * 2, heads.KvBytesPerChip); // the whole cache on every chip
        Assert.Equal(8.0 * 4 * 101 * 2 / 4, batch.KvBytesPerChip);
        // with as many kv heads as chips, head sharding splits the cache too
        var mha = new ModelShape("mha", 2, 8, 4, 4, 2, 16, 10, parallelBlock: true, gatedMlp: false);
        Assert.Equal(2.0 * 2 * 4 * 2 * 4 * 101 * 2 / 4, Model(shape: mha).Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Heads), pass).KvBytesPerChip);
    }

    [Fact]
    public void ImpossibleLayoutsAreRefusedWithAReason()
    {
        var six = new ModelShape("six-heads", 2, 8, 6, 1, 4, 16, 10, parallelBlock: true, gatedMlp: false);
        PassCost heads = Model(shape: six).Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Heads), new InferencePass(4, 1, 0));
        Assert.False(heads.Feasible);
        Assert.Contains("6 heads do not split over 4 chips", heads.Reason);
        Assert.Equal(double.PositiveInfinity, heads.LatencySeconds);

        PassCost gathered = Model().Evaluate(new Layout(FeedForwardLayout.WeightGatheredXYZ, AttentionSharding.Batch), new InferencePass(2, 1, 0));
        Assert.Contains("batch 2 does not split over the 4 chips", gathered.Reason);

        PassCost xy = Model().Evaluate(new Layout(FeedForwardLayout.WeightGatheredXY, AttentionSharding.Batch), new InferencePass(4, 1, 0));
        Assert.Contains("three mesh axes", xy.Reason);

        PassCost ffn = Model(chips: 32).Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch), new InferencePass(4, 1, 0));
        Assert.Contains("d_ff 16 does not split over 32 chips", ffn.Reason);

        var tinyHbm = ToyChip with { HbmCapacity = 500 };
        PassCost full = Model(chip: tinyHbm).Evaluate(new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch), new InferencePass(4, 1, 100));
        Assert.Contains("per chip", full.Reason);
        Assert.Contains("toy-tpu has", full.Reason);

        // The ranking lists refused layouts after every feasible one.
        var ranked = Model(shape: six).Rank(new InferencePass(4, 1, 0));
        Assert.Equal(Layout.All.Count, ranked.Count);
        Assert.True(ranked.SkipWhile(c => c.Feasible).All(c => !c.Feasible));
        Assert.True(ranked.Where(c => c.Feasible).Select(c => c.LatencySeconds).SequenceEqual(ranked.Where(c => c.Feasible).Select(c => c.LatencySeconds).Order()));
    }

    [Fact]
    public void NonsenseSizesThrow()
    {
        Assert.Throws<ArgumentException>(() => Model().Evaluate(Layout.All[0], new InferencePass(0, 1, 0)));
        Assert.Throws<ArgumentException>(() => Model().Evaluate(Layout.All[0], new InferencePass(1, 1, -1)));
        Assert.Throws<ArgumentException>(() => new ModelShape("bad", 0, 8, 4, 1, 2, 16, 10, true, false));
        Assert.Throws<ArgumentException>(() => new ModelShape("bad", 2, 8, 4, 3, 2, 16, 10, true, false));
        Assert.Throws<ArgumentException>(() => new InferenceCostModel(new CostModelOptions(Toy, ToyChip.TopologyFor(4)) { FlopsEfficiency = 1.5 }));
        Assert.Throws<ArgumentException>(() => new ServingRequest(1, 0, 0, 1).Validate());
    }

    [Fact]
    public void EndToEndSumsPrefillAndEveryDecodeStep()
    {
        var model = Model();
        var request = new ServingRequest(4, 10, 5, 3);
        var layout = new Layout(FeedForwardLayout.WeightStationary1D, AttentionSharding.Batch);
        ServingCost cost = ServingPlanner.Cost(model, request, layout, layout);
        double expected = model.Evaluate(layout, new InferencePass(4, 5, 10)).LatencySeconds
            + model.Evaluate(layout, new InferencePass(4, 1, 15)).LatencySeconds
            + model.Evaluate(layout, new InferencePass(4, 1, 16)).LatencySeconds
            + model.Evaluate(layout, new InferencePass(4, 1, 17)).LatencySeconds;
        Assert.True(cost.Feasible);
        Assert.Equal(expected, cost.TotalSeconds, 9);
        Assert.Equal(0, ServingPlanner.Cost(model, request with { Generate = 0 }, layout, layout).DecodeSeconds);
    }
}
