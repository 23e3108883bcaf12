using Loom.Core;
using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models.Reformer;
using Loom.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Reformer;

public class ReformerModelTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    /// <summary>Two blocks of width 16, 2 heads of 8, LSH with 4 buckets, 2 rounds and chunks of 4 (so a query sees at most 8 of 16 keys).</summary>
    private static ReformerOptions Tiny(ReformerAttentionKind attention = ReformerAttentionKind.Lsh, bool reversible = true) => new()
    {
        VocabSize = 40, ModelDim = 16, NumLayers = 2, NumHeads = 2, HeadDim = 8, MlpDim = 32, MaxSequenceLength = 32,
        Attention = attention, LshBuckets = 4, LshRounds = 2, LshChunkLength = 4, Reversible = reversible,
        FfChunkLength = 5, OutputChunkLength = 3,
    };

    private static ReformerModel Model(ReformerOptions options, long seed)
    {
        using var g = Seeded.Generator(seed);
        return (ReformerModel)options.Build(generator: g);
    }

    private static Tensor Tokens(long seed, long rows, long length, long vocab = 40)
    {
        using var g = Seeded.Generator(seed);
        return randint(vocab, new[] { rows, length }, generator: g);
    }

    private static FeatureBatch Batch(Tensor inputs, Tensor targets) => FeatureBatch.Decoder(inputs.alias(), targets.alias());

    private static Dictionary<string, Tensor> Gradients(ReformerModel model, FeatureBatch batch)
    {
        model.train();
        model.zero_grad();
        // Two forwards (two sets of rotations) before one backward: the reversible backward must replay each forward's.
        var first = model.Loss(batch, zLossWeight: 1e-2).Total;
        var second = model.Loss(batch, zLossWeight: 1e-2).Total;
        (first + 0.5 * second).backward();
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
    }

    private static double RelativeError(Tensor actual, Tensor expected) =>
        (actual - expected).abs().max().item<float>() / Math.Max(expected.abs().max().item<float>(), 1e-12);

    [Theory]
    [InlineData(ReformerAttentionKind.Lsh)]
    [InlineData(ReformerAttentionKind.Full)]
    public void ReversibleModelHasTheGradientsOfTheStandardModel(ReformerAttentionKind attention)
    {
        using var scope = NewDisposeScope();
        using var reversible = Model(Tiny(attention, reversible: true), 3);
        using var standard = Model(Tiny(attention, reversible: false), 3);
        var tokens = Tokens(4, 2, 17);
        using var batch = Batch(tokens.narrow(1, 0, 16), tokens.narrow(1, 1, 16));
        // Several steps: each training forward draws new rotations, which the reversible backward must replay.
        for (int step = 0; step < 3; step++)
        {
            var expected = Gradients(standard, batch);
            var actual = Gradients(reversible, batch);
            Assert.Equal(expected.Keys, actual.Keys);
            foreach (var (name, grad) in expected)
                Assert.True(RelativeError(actual[name], grad) < 1e-4, $"step {step}, {name}: relative error {RelativeError(actual[name], grad)}");
        }
    }

    [Fact]
    public void LshRestrictsAttentionAndDrawsNewRotationsPerTrainingStep()
    {
        using var scope = NewDisposeScope();
        using var lsh = Model(Tiny(ReformerAttentionKind.Lsh), 5);
        using var full = Model(Tiny(ReformerAttentionKind.Full), 5);
        var tokens = Tokens(6, 2, 16);
        lsh.eval();
        full.eval();
        var a = lsh.Forward(tokens, null);
        Assert.True(allclose(a, lsh.Forward(tokens, null)), "evaluation hashes with fixed rotations");
        Assert.False(allclose(a, full.Forward(tokens, null), rtol: 1e-4, atol: 1e-4), "LSH with 4 buckets and chunks of 4 sees fewer keys than full attention");

        lsh.train();
        using var batch = Batch(tokens, tokens);
        var first = lsh.Loss(batch, 0).Total.item<float>();
        var second = lsh.Loss(batch, 0).Total.item<float>();
        Assert.NotEqual(first, second); // the same weights and batch, new rotations
    }

    [Fact]
    public void ChunkedLossEqualsTheWholeLogitsLossAndGradients()
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(7);
        var h = randn(new long[] { 2, 7, 6 }, generator: g).requires_grad_(true);
        var w = randn(new long[] { 11, 6 }, generator: g).requires_grad_(true);
        var targets = randint(11, new long[] { 2, 7 }, generator: g);
        targets[0, 3] = tensor(-1L); // an ignored target, weight 0
        var weights = rand(new long[] { 2, 7 }, generator: g);
        weights[0, 3] = tensor(0f);

        var (nll, z) = ChunkedCrossEntropy.Compute(h, w, targets, weights, chunkLength: 3);
        (nll + 0.3 * z).backward();
        var (dh, dw) = (h.grad!.clone(), w.grad!.clone());
        h.grad!.zero_();
        w.grad!.zero_();
        var (refNll, refZ) = ChunkedCrossEntropy.Reference(h, w, targets, weights);
        (refNll + 0.3 * refZ).backward();

        Assert.True(allclose(nll, refNll, rtol: 1e-5, atol: 1e-5));
        Assert.True(allclose(z, refZ, rtol: 1e-5, atol: 1e-5));
        Assert.True(RelativeError(dh, h.grad!) < 1e-5, $"hidden gradient error {RelativeError(dh, h.grad!)}");
        Assert.True(RelativeError(dw, w.grad!) < 1e-5, $"weight gradient error {RelativeError(dw, w.grad!)}");
    }

    [Fact]
    public void ModelLossEqualsTheLossOfItsLogits()
    {
        using var scope = NewDisposeScope();
        using var model = Model(Tiny(ReformerAttentionKind.Full), 8);
        model.eval();
        var tokens = Tokens(9, 2, 13);
        using var batch = Batch(tokens.narrow(1, 0, 12), tokens.narrow(1, 1, 12));
        var chunked = model.Loss(batch, 1e-2);
        var whole = LanguageModel.LossOfLogits(model.Forward(batch).Logits, batch.Targets, null, 1e-2);
        Assert.True(allclose(chunked.Total, whole.Total, rtol: 1e-5, atol: 1e-5), $"{chunked.Total.item<float>()} vs {whole.Total.item<float>()}");
        Assert.True(allclose(chunked.ZLoss, whole.ZLoss, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void CachedDecodingGivesTheFullForwardsLogits()
    {
        using var scope = NewDisposeScope();
        using var model = Model(Tiny(ReformerAttentionKind.Full), 10);
        model.eval();
        var tokens = Tokens(11, 2, 12);
        var full = model.Forward(tokens, null); // (2, 12, V)

        using var cache = KvCache.For(model, batchSize: 2, capacity: 16);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 4));
        var chunk = cache.Run(model, tokens.narrow(1, 4, 5));
        var steps = Enumerable.Range(9, 3).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToList();
        var cached = cat(new[] { prefill, chunk }.Concat(steps).ToList(), 1);
        Assert.True(allclose(full, cached, rtol: 1e-4, atol: 1e-4), $"max diff {(full - cached).abs().max().item<float>()}");
    }

    [Fact]
    public void PackedRowsAreScoredAsIfAlone()
    {
        using var scope = NewDisposeScope();
        using var model = Model(Tiny(ReformerAttentionKind.Full), 12);
        model.eval();
        var a = Tokens(13, 1, 5);
        var b = Tokens(14, 1, 7);
        var packed = cat([a, b], 1);                                                     // (1, 12)
        using var batch = new FeatureBatch(new Dictionary<string, Tensor>
        {
            [FeatureNames.DecoderInputTokens] = packed,
            [FeatureNames.DecoderTargetTokens] = packed.alias(),
            [FeatureNames.DecoderSegmentIds] = tensor(new long[] { 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2 }).unsqueeze(0),
            [FeatureNames.DecoderPositions] = tensor(new long[] { 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6 }).unsqueeze(0),
        });
        var logits = model.Forward(batch).Logits;
        var alone = cat([model.Forward(a, null), model.Forward(b, null)], 1);
        Assert.True(allclose(logits, alone, rtol: 1e-4, atol: 1e-4), $"max diff {(logits - alone).abs().max().item<float>()}");
    }

    [Fact]
    public void CheckpointRoundTripKeepsOptionsWeightsAndTheLshCounter()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var model = Model(Tiny(), 15);
        var tokens = Tokens(16, 1, 8);
        model.train();
        using (var batch = Batch(tokens, tokens)) model.Loss(batch, 0); // one training forward: lsh_step = 1
        model.eval();
        var expected = model.Forward(tokens, null);
        ModelCheckpoint.Save(dir.Path, model, new ModelManifest { Model = model.Options });

        var (loaded, manifest) = ModelCheckpoint.Load(dir.Path, expectedArchitecture: ModelArchitectures.Reformer);
        using var _ = loaded;
        Assert.Equal(model.Options, manifest.Model);
        Assert.IsType<ReformerModel>(loaded);
        loaded.eval();
        Assert.True(allclose(expected, loaded.Forward(tokens, null)));
        var counter = loaded.state_dict()["lsh_step"];
        Assert.Equal(1L, counter.item<long>());
    }

    [Fact]
    public void PresetBuildsAndTrainsOnLongSequences()
    {
        var options = Assert.IsType<ReformerOptions>(ModelPresets.Load("reformer-tiny", Configs));
        Assert.Equal(ReformerAttentionKind.Lsh, options.Attention);
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(17);
        using var model = options.Build(generator: g);
        var tokens = Tokens(18, 1, 513, 258).narrow(1, 0, 512);
        using var batch = Batch(tokens, tokens);
        model.train();
        var loss = model.Loss(batch, 0).Total;
        Assert.InRange(loss.item<float>(), 4.0, 8.0); // about ln 258 = 5.55 at initialisation
        loss.backward();
        Assert.All(model.parameters(), p => Assert.NotNull(p.grad));
    }

    [Theory]
    [InlineData("{\"lsh_buckets\": 3}", "model.lsh_buckets = 3")]
    [InlineData("{\"lsh_rounds\": 0}", "model.lsh_rounds = 0")]
    [InlineData("{\"model_dim\": -1}", "model.model_dim = -1")]
    [InlineData("{\"output_chunk_length\": 0}", "model.output_chunk_length = 0")]
    public void InvalidOptionsAreRefusedNamingTheKey(string json, string message)
    {
        string file = Path.Combine(Path.GetTempPath(), $"loom-reformer-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, "{\"architecture\": \"reformer\", " + json.TrimStart('{'));
        try
        {
            var e = Assert.Throws<ConfigException>(() => ModelPresets.Load(file, Configs));
            Assert.Contains(message, e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void SequencesTheChunksDoNotDivideAreRefused()
    {
        using var scope = NewDisposeScope();
        using var model = Model(Tiny(), 19);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(Tokens(20, 1, 10), null));
        Assert.Contains("model.lsh_chunk_length = 4", e.Message, StringComparison.Ordinal);
    }
}
