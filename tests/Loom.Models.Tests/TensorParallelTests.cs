using Loom.Distributed;
using Loom.Models.Layers;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>
/// Megatron-style splits, checked in one process: each rank's part of a sharded sublayer gives a partial sum, and the
/// parts plus the output bias (added once) equal the whole layer. The multi-rank runs (tests/Loom.Cli.Tests) check
/// the collectives between them.
/// </summary>
public sealed class TensorParallelTests
{
    private const int ModelDim = 32, Heads = 4, HeadDim = 8, MlpDim = 64;

    [Theory]
    [InlineData(1, false)] // multi-query: K/V replicated on both ranks
    [InlineData(1, true)]
    [InlineData(4, false)] // multi-head: K/V heads split with the query heads
    [InlineData(2, true)]  // grouped: each rank keeps its groups' K/V heads
    public void TheRanksPartsOfShardedAttentionSumToTheWholeLayer(int kvHeads, bool bias)
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(3);
        var x = randn([2, 5, ModelDim], generator: g);                  // (B, T, D)
        Attention Build() => new(ModelDim, Heads, kvHeads, HeadDim, bias, new Rotary(HeadDim, 16, 10000), generator: Seeded.Generator(11));
        var whole = Build();
        if (bias) RandomiseBiases(whole, 12);
        var expected = whole.forward(x);                                // (B, T, D)

        var sum = zeros_like(expected);
        for (int part = 0; part < 2; part++)
        {
            var shard = Build();
            if (bias) RandomiseBiases(shard, 12);
            shard.Shard(part, 2, shardKeysAndValues: kvHeads > 1);
            Assert.Equal(Heads / 2, shard.Heads);
            Assert.Equal(kvHeads > 1 ? kvHeads / 2 : 1, shard.KvHeads);
            sum += shard.Forward(x, 0, null, addOutputBias: false);
            if (part == 0 && shard.OutputBias is { } b) sum += b;
        }
        Assert.True(allclose(sum, expected, rtol: 1e-5, atol: 1e-6), $"max difference {(sum - expected).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(MlpActivation.SwiGlu, true)]
    [InlineData(MlpActivation.Gelu, false)]
    public void TheRanksPartsOfAShardedMlpSumToTheWholeLayer(MlpActivation activation, bool bias)
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(4);
        var x = randn([3, 4, ModelDim], generator: g); // (B, T, D)
        Mlp Build()
        {
            var mlp = new Mlp(ModelDim, MlpDim, activation, bias, generator: Seeded.Generator(21));
            if (bias) RandomiseBiases(mlp, 22);
            return mlp;
        }
        var expected = Build().forward(x);
        var sum = zeros_like(expected);
        for (int part = 0; part < 4; part++)
        {
            var shard = Build();
            shard.Shard(part, 4);
            sum += shard.Forward(x, addOutputBias: false);
            if (part == 0 && shard.OutputBias is { } b) sum += b;
        }
        Assert.True(allclose(sum, expected, rtol: 1e-5, atol: 1e-6), $"max difference {(sum - expected).abs().max().item<float>()}");
    }

    [Fact]
    public void ADecoderKeepsItsPartOfEachSplitKernelAndMarksReplicatedKeysAndValues()
    {
        using var scope = NewDisposeScope();
        var options = TinyModels.Decoder(kvHeads: 1) with { UseBias = true };
        using var whole = Seeded.Model(options, 5);
        var wholeState = whole.state_dict();
        using var model = Seeded.Model(options, 5);
        var layout = model.ShardForTensorParallel(new OneRankOfMany(1, 2), PartitionRules.Default);

        Assert.Equal(0, layout.ShardedDim("blocks.0.attn.wq.weight"));
        Assert.Equal(0, layout.ShardedDim("blocks.0.attn.wq.bias"));
        Assert.Equal(1, layout.ShardedDim("blocks.1.attn.wo.weight"));
        Assert.Null(layout.ShardedDim("blocks.1.attn.wo.bias"));        // added once, after the sum
        Assert.Equal(0, layout.ShardedDim("blocks.0.mlp.up.weight"));
        Assert.Equal(1, layout.ShardedDim("blocks.0.mlp.down.weight"));
        Assert.Null(layout.ShardedDim("embed"));                        // vocab and embed replicated
        Assert.Null(layout.ShardedDim("blocks.0.attn.wk.weight"));      // multi-query K/V replicated...
        Assert.Contains("blocks.0.attn.wk.weight", layout.PartialGradients); // ...their gradients summed over the group
        Assert.Contains("blocks.1.attn.wv.bias", layout.PartialGradients);
        Assert.DoesNotContain("blocks.0.attn.wq.weight", layout.PartialGradients);

        // Rank 1 holds the second half of every split kernel, the whole of every other tensor.
        foreach (var (name, tensor) in model.state_dict())
        {
            var expected = layout.ShardedDim(name) is int dim ? ShardedTensors.Part(wholeState[name], dim, 1, 2) : wholeState[name];
            Assert.True(expected.equal(tensor).all().item<bool>(), name);
        }
        Assert.True(model.ParameterCount < whole.ParameterCount);
    }

    [Fact]
    public void ACheckpointOfTheWholeModelLoadsIntoEachRanksPart()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-tp-load-");
        var options = TinyModels.Decoder(kvHeads: 4);
        using var whole = Seeded.Model(options, 6);
        ModelCheckpoint.Save(temp.Path, whole, new ModelManifest { Model = options });
        using var part = Seeded.Model(options, 99); // other weights, replaced by the load
        part.ShardForTensorParallel(new OneRankOfMany(0, 2), PartitionRules.Default);
        ModelCheckpoint.LoadCheckpointWeights(part, temp.Path);
        var wholeState = whole.state_dict();
        foreach (var (name, tensor) in part.state_dict())
        {
            var expected = part.TensorParallel.ShardedDim(name) is int dim ? ShardedTensors.Part(wholeState[name], dim, 0, 2) : wholeState[name];
            Assert.True(expected.equal(tensor).all().item<bool>(), name);
        }
        var error = Assert.Throws<InvalidOperationException>(() => ModelCheckpoint.Save(temp.Path, part, new ModelManifest { Model = options }));
        Assert.Contains("SaveSharded", error.Message);
    }

    [Theory]
    [InlineData(6, 4, 64, 1, 4, "model.num_heads = 6 is not divisible by parallelism.model = 4")]
    [InlineData(4, 8, 66, 1, 4, "model.mlp_dim = 66 is not divisible by parallelism.model = 4")]
    [InlineData(4, 8, 64, 2, 4, "model.num_kv_heads = 2 is not divisible by parallelism.model = 4")]
    public void UnevenSplitsAreRefusedNamingTheSetting(int heads, int headDim, int mlpDim, int kvHeads, int parts, string message)
    {
        using var scope = NewDisposeScope();
        var options = TinyModels.Decoder(kvHeads) with { NumHeads = heads, HeadDim = headDim, MlpDim = mlpDim };
        using var decoder = Seeded.Model(options, 7);
        var error = Assert.Throws<ArgumentException>(() => decoder.ShardForTensorParallel(new OneRankOfMany(0, parts), PartitionRules.Default));
        Assert.Contains(message, error.Message);
        Assert.Equal(1, decoder.TensorParallel.Parts); // nothing was split
    }

    [Fact]
    public void RulesThatTheModelCannotFollowAreRefused()
    {
        using var scope = NewDisposeScope();
        using var decoder = Seeded.Model(TinyModels.Decoder(kvHeads: 2), 8);
        var vocab = Assert.Throws<ArgumentException>(() => decoder.ShardForTensorParallel(new OneRankOfMany(0, 2), new PartitionRules([("vocab", "model")])));
        Assert.Contains("maps 'vocab' to the model axis, which Loom does not split yet", vocab.Message);
        var kv = Assert.Throws<ArgumentException>(() => decoder.ShardForTensorParallel(new OneRankOfMany(0, 2), new PartitionRules([("heads", "model"), ("kv_heads", null)])));
        Assert.Contains("replicates kv_heads, which works only for multi-query attention", kv.Message);
        using var moe = Seeded.Model(TinyModels.MoeDecoder(), 9);
        Assert.Contains("does not split mixture-of-experts layers", Assert.Throws<ArgumentException>(() => moe.ShardForTensorParallel(new OneRankOfMany(0, 2), PartitionRules.Default)).Message);
        using var t5 = Seeded.Model(TinyModels.T5(), 10);
        Assert.Contains("not implemented for t5 models", Assert.Throws<ArgumentException>(() => t5.ShardForTensorParallel(new OneRankOfMany(0, 2), PartitionRules.Default)).Message);

        Assert.Contains("the logical axis 'layers'", Assert.Throws<ArgumentException>(() => new PartitionRules([("layers", "model")])).Message);
        Assert.Contains("training.zero_stage = 3", Assert.Throws<ArgumentException>(() => new PartitionRules([("mlp", "data")])).Message);
        Assert.Contains("partitioning.rules[0] must be a pair", Assert.Throws<ArgumentException>(() => PartitionRules.Parse([["mlp"]])).Message);
    }

    [Fact]
    public void RulesReplicateWhatTheyDoNotSplit()
    {
        using var scope = NewDisposeScope();
        using var decoder = Seeded.Model(TinyModels.Decoder(kvHeads: 1), 12);
        var layout = decoder.ShardForTensorParallel(new OneRankOfMany(0, 2), new PartitionRules([("mlp", "model")]));
        Assert.Null(layout.ShardedDim("blocks.0.attn.wq.weight")); // heads: no rule, replicated
        Assert.Empty(layout.PartialGradients);                    // whole attention: whole gradients
        Assert.Equal(0, layout.ShardedDim("blocks.0.mlp.gate.weight"));
        Assert.Throws<InvalidOperationException>(() => decoder.ShardForTensorParallel(new OneRankOfMany(0, 2), PartitionRules.Default));
    }

    private static void RandomiseBiases(TorchSharp.torch.nn.Module module, long seed)
    {
        using var g = Seeded.Generator(seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in module.named_parameters())
            if (name.EndsWith("bias", StringComparison.Ordinal)) p.copy_(randn(p.shape, generator: g));
    }
}
