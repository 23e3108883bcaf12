using Loom.Core;
using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models.T5;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.T5;

public class T5ModelTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    /// <summary>A tiny T5 whose 8 buckets up to distance 16 put sequences of ~10 tokens into logarithmic buckets.</summary>
    private static T5Options Tiny(double dropout = 0) => new()
    {
        VocabSize = 50, ModelDim = 32, NumEncoderLayers = 2, NumDecoderLayers = 2, NumHeads = 4, HeadDim = 8, MlpDim = 48,
        RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16, MaxSequenceLength = 40, DropoutRate = dropout,
    };

    private static T5Model Model(T5Options options, ulong seed)
    {
        using var generator = new Generator(seed);
        return (T5Model)options.Build(generator: generator);
    }

    private static Tensor Row(IEnumerable<int> ids) => tensor(ids.Select(x => (long)x).ToArray()).unsqueeze(0); // (1, T)

    /// <summary>One example alone in an unpadded row without segment ids: decoder inputs are the targets shifted right behind 0.</summary>
    private static FeatureBatch Alone(int[] inputs, int[] targets) => new(new Dictionary<string, Tensor>
    {
        [FeatureNames.EncoderInputTokens] = Row(inputs),
        [FeatureNames.DecoderInputTokens] = Row([0, .. targets[..^1]]),
        [FeatureNames.DecoderTargetTokens] = Row(targets),
    });

    [Theory]
    [InlineData("t5-small", 76_961_152L)]
    [InlineData("t5-base", 247_577_856L)]
    [InlineData("t5-large", 783_150_080L)]
    [InlineData("t5-xl", 2_849_757_184L)]
    [InlineData("t5-xxl", 11_135_332_352L)]
    public void T511PresetsHaveThePublishedParameterCounts(string preset, long expected)
    {
        using var _ = NewDisposeScope();
        var options = Assert.IsType<T5Options>(ModelPresets.Load(preset, Configs));
        Assert.Equal(ModelArchitectures.T5, options.Architecture);
        using var model = options.Build(META);
        Assert.IsType<T5Model>(model);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal(expected, model.ActiveParameterCount);
    }

    [Fact]
    public void TinyPresetIsAByteT5ThatRunsOnTheCpu()
    {
        using var _ = NewDisposeScope();
        var o = Assert.IsType<T5Options>(ModelPresets.Load("t5-tiny", Configs));
        Assert.True(o.VocabSize >= 258 + 100);
        Assert.Equal((128, 2, 2, 4, 32, 256), (o.ModelDim, o.NumEncoderLayers, o.NumDecoderLayers, o.NumHeads, o.HeadDim, o.MlpDim));
        using var model = Model(o, 1);
        var logits = model.Forward(Alone([72, 105, 1], [33, 1])).Logits;
        Assert.Equal([1L, 2, o.VocabSize], logits.shape);
        Assert.True(model.IsEncoderDecoder);
        Assert.Equal(new KvCacheShape(2, 4, 32), model.KvCacheShape);
    }

    [Fact]
    public void PackedExamplesScoreAsIfAlone()
    {
        using var _ = NewDisposeScope();
        using var model = Model(Tiny(), 11);
        (int[] Inputs, int[] Targets)[] examples = [([5, 9, 2, 33, 7, 1], [12, 13, 1]), ([4, 4, 8, 21, 30, 6, 17, 22, 1], [40, 41, 42, 43, 1]), ([11, 1], [3, 3, 3, 3, 3, 3, 1])];
        var converter = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(inputsLength: 20, targetsLength: 18));
        var (rows, _) = converter.Convert(examples);
        Assert.Single(rows);
        Assert.Equal(3, rows[0].SegmentCount);
        using var packed = EncoderDecoderFeatureConverter.ToTensors(rows).ToFeatures();

        var packedLogits = model.Forward(packed).Logits; // (1, 18, V)
        var packedScore = model.Score(packed);           // (1)
        var packedLoss = model.Loss(packed, 0).CrossEntropy.item<float>();
        Assert.False(packedLogits.isnan().any().item<bool>()); // padding attends to nothing real yet stays finite

        int at = 0;
        double score = 0, nats = 0;
        int tokens = 0;
        foreach (var (inputs, targets) in examples)
        {
            using var alone = Alone(inputs, targets);
            var aloneLogits = model.Forward(alone).Logits; // (1, n, V)
            var slice = packedLogits.narrow(1, at, targets.Length);
            Assert.True(allclose(aloneLogits, slice, rtol: 1e-4, atol: 1e-4), $"example at {at}: max diff {(aloneLogits - slice).abs().max().item<float>()}");
            score += model.Score(alone).item<float>();
            nats += model.Loss(alone, 0).CrossEntropy.item<float>() * targets.Length;
            tokens += targets.Length;
            at += targets.Length;

            // The converter's own unpacked, padded row of the example scores the same.
            var (own, _) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(20, 18) { Pack = false }).Convert([(inputs, targets)]);
            using var padded = EncoderDecoderFeatureConverter.ToTensors(own).ToFeatures();
            Assert.Equal(model.Score(alone).item<float>(), model.Score(padded).item<float>(), 3);
        }
        Assert.Equal(score, packedScore.item<float>(), 3);
        Assert.Equal(nats / tokens, packedLoss, 4);
    }

    [Fact]
    public void IncrementalDecodingWithACacheEqualsTheFullForward()
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = Model(Tiny(), 21);
        using var g = new Generator(22);
        var inputs = randint(1, 50, [2, 7], generator: g);  // (B, S)
        var tokens = randint(1, 50, [2, 12], generator: g); // (B, T): decoder inputs
        using var batch = new FeatureBatch(new Dictionary<string, Tensor>
        {
            [FeatureNames.EncoderInputTokens] = inputs,
            [FeatureNames.DecoderInputTokens] = tokens,
            [FeatureNames.DecoderTargetTokens] = tokens,
        });
        var full = model.Forward(batch).Logits; // (2, 12, V)

        using var cache = KvCache.For(model, batchSize: 2, capacity: 16);
        cache.Memory = model.Encode(inputs);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 4));                                     // prompt prefix
        var chunk = cache.Run(model, tokens.narrow(1, 4, 5));                                       // a chunked prefill after it
        var steps = Enumerable.Range(9, 3).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToList(); // decode steps
        var cached = cat(new[] { prefill, chunk }.Concat(steps).ToList(), 1);
        Assert.Equal(12, cache.Length);
        Assert.True(allclose(full, cached, rtol: 1e-4, atol: 1e-4), $"max diff {(full - cached).abs().max().item<float>()}");

        // One encoded row serves every cache row (beams of one request).
        using var beams = KvCache.For(model, batchSize: 2, capacity: 16);
        beams.Memory = model.Encode(inputs.narrow(0, 0, 1));
        var same = tokens.narrow(0, 0, 1).expand(2, -1);
        var beamLogits = cat(new[] { beams.Run(model, same.narrow(1, 0, 6)), beams.Run(model, same.narrow(1, 6, 6)) }, 1);
        Assert.True(allclose(full[0], beamLogits[0], rtol: 1e-4, atol: 1e-4));
        Assert.True(allclose(full[0], beamLogits[1], rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void QuantizedModelDecodesCloseToTheFloatOne()
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = Model(Tiny(), 25);
        using var batch = Alone([5, 9, 2, 33, 7, 1], [12, 13, 14, 1]);
        var reference = model.Forward(batch).Logits;
        var report = model.Quantize(Loom.Models.Quantization.QuantizationMode.Int8);
        Assert.Equal(2 * 4 + 2 * 8 + 2 * 2 * 3 + 1, report.Layers); // attention q k v o (self and cross), MLPs, lm_head
        var quantized = model.Forward(batch).Logits;
        Assert.True(allclose(reference, quantized, rtol: 0.05, atol: 0.05), $"max diff {(reference - quantized).abs().max().item<float>()}");

        using var cache = KvCache.For(model, 1, 8);
        cache.Memory = model.Encode(batch[FeatureNames.EncoderInputTokens]);
        Assert.True(allclose(quantized, cache.Run(model, batch.Inputs), rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void TheDecoderNeedsTheEncoderMemory()
    {
        using var _ = NewDisposeScope();
        using var model = Model(Tiny(), 23);
        var tokens = zeros(1, 3, dtype: int64);
        Assert.Contains("Encode", Assert.Throws<NotSupportedException>(() => model.Forward(tokens, null)).Message);
        using var cache = KvCache.For(model, 1, 8);
        Assert.Contains("Memory", Assert.Throws<InvalidOperationException>(() => cache.Run(model, tokens)).Message);
    }

    [Fact]
    public void GradientsReachEveryParameter()
    {
        using var _ = NewDisposeScope();
        using var model = Model(Tiny(), 31);
        var (rows, _) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(12, 10))
            .Convert([([5, 9, 2, 33, 7, 1], [12, 13, 1]), ([4, 4, 8, 1], [40, 41, 42, 43, 1]), ([20, 21, 22, 1], [3, 1])]);
        using var batch = EncoderDecoderFeatureConverter.ToTensors(rows).ToFeatures();
        model.Loss(batch, 1e-4).Total.backward();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"{name}'s gradient is zero");
        }
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("shared", names);
        Assert.Contains("lm_head.weight", names);
        Assert.Contains("encoder.relative_attention_bias.weight", names);
        Assert.Contains("decoder.relative_attention_bias.weight", names);
        Assert.Contains("decoder.blocks.1.cross_attn.q.weight", names);
        Assert.Contains("encoder.blocks.0.mlp.wi_0.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("encoder.") && n.Contains("cross_attn"));
        Assert.DoesNotContain(names, n => n.Contains("bias") && !n.Contains("relative_attention_bias"));
    }

    [Fact]
    public void DropoutActsOnlyInTrainingMode()
    {
        using var _ = NewDisposeScope();
        using var batch = Alone([5, 9, 2, 33, 7, 1], [12, 13, 14, 1]);
        using var model = Model(Tiny(dropout: 0.3), 41);
        using var plain = Model(Tiny(), 41); // the same weights without dropout

        model.train();
        var a = model.Forward(batch).Logits;
        var b = model.Forward(batch).Logits;
        Assert.False(allclose(a, b, rtol: 1e-3, atol: 1e-3));

        model.eval();
        plain.eval();
        var c = model.Forward(batch).Logits;
        Assert.True(c.eq(model.Forward(batch).Logits).all().item<bool>());
        Assert.True(allclose(c, plain.Forward(batch).Logits, rtol: 1e-5, atol: 1e-6));
        plain.train(); // no dropout rate: training mode changes nothing
        Assert.True(allclose(c, plain.Forward(batch).Logits, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void InitialisationFollowsMeshTensorFlowsT5AndDependsOnlyOnTheSeed()
    {
        using var _ = NewDisposeScope();
        var o = Tiny() with { ModelDim = 256, HeadDim = 64, NumHeads = 4, MlpDim = 512, VocabSize = 300 };
        using var model = Model(o, 51);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(1.0, p["shared"].std().item<float>(), 1);                                        // N(0, 1)
        Assert.Equal(1 / Math.Sqrt(256 * 64), p["encoder.blocks.0.self_attn.q.weight"].std().item<float>(), 3); // N(0, (D·Dh)^-0.5)
        Assert.Equal(1 / Math.Sqrt(256), p["decoder.blocks.1.cross_attn.k.weight"].std().item<float>(), 2);     // N(0, D^-0.5)
        Assert.Equal(1 / Math.Sqrt(256), p["encoder.blocks.1.self_attn.o.weight"].std().item<float>(), 2);      // N(0, (H·Dh)^-0.5)
        Assert.Equal(1 / Math.Sqrt(512), p["decoder.blocks.0.mlp.wo.weight"].std().item<float>(), 2);           // N(0, F^-0.5)
        Assert.Equal(1 / Math.Sqrt(256), p["lm_head.weight"].std().item<float>(), 2);                           // N(0, D^-0.5)

        using var again = Model(o, 51);
        Assert.All(again.named_parameters(), x => Assert.True(x.parameter.eq(p[x.name]).all().item<bool>(), x.name));
        // TorchSharp's reflection over the module (to(), dtype casts) works on the model.
        again.to(ScalarType.Float64);
        Assert.All(again.parameters(), x => Assert.Equal(ScalarType.Float64, x.dtype));
    }

    [Fact]
    public void FlopsCountMatmulsOfEveryAttentionLayer()
    {
        using var _ = NewDisposeScope();
        var o = Tiny();
        using var model = Model(o, 61);
        long lookup = 50 * 32 + 2 * 8 * 4; // the shared embedding and the two bias tables
        double expected = 6.0 * (model.ParameterCount - lookup) + 12.0 * (2 + 2 * 2) * 4 * 8 * 24;
        Assert.Equal(expected, model.FlopsPerToken(24));
    }

    [Theory]
    [InlineData(31, 128, "even")]
    [InlineData(2, 128, "at least 4")]
    [InlineData(32, 16, "relative_attention_max_distance")]
    public void BadBucketOptionsAreRefused(int buckets, int maxDistance, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => (Tiny() with { RelativeAttentionNumBuckets = buckets, RelativeAttentionMaxDistance = maxDistance }).Validate());
        Assert.Contains(message, e.Message);
        Assert.Contains("relative_attention", e.Message);
    }

    [Fact]
    public void SwitchStyleT5RoutesBothStacksAndCountsActiveExperts()
    {
        using var _ = NewDisposeScope();
        var options = Tiny() with { Moe = new MoeOptions { NumExperts = 4, TopK = 1, Every = 2, CapacityFactor = 2 } };
        using var model = Model(options, 72);
        var moe = model.modules().OfType<Loom.Models.Layers.MoeMlp>().ToList();
        Assert.Equal(options.NumEncoderLayers / 2 + options.NumDecoderLayers / 2, moe.Count);
        Assert.All(moe, m => Assert.Equal(MlpActivation.GeGlu, m.Activation)); // T5.1.1's gated GELU in every expert
        Assert.Equal(model.ParameterCount - moe.Sum(m => m.InactiveParameterCount), model.ActiveParameterCount);

        using var g = Seeded.Generator(73);
        using var batch = new FeatureBatch(new Dictionary<string, Tensor>
        {
            [FeatureNames.EncoderInputTokens] = randint(1, options.VocabSize, [2, 9], generator: g),
            [FeatureNames.DecoderInputTokens] = randint(1, options.VocabSize, [2, 5], generator: g),
            [FeatureNames.DecoderTargetTokens] = randint(1, options.VocabSize, [2, 5], generator: g),
        });
        var loss = model.Loss(batch, 0);
        Assert.Equal(["load_balancing", "router_z_loss"], loss.Auxiliary.Keys.Order());
        Assert.Equal(1.0, loss.Statistics["expert_load"].sum().item<float>(), 4);
        loss.Total.backward();
        Assert.All(moe, m => Assert.True(m.RouterWeight.grad is { } grad && grad.abs().sum().item<float>() > 0));
    }

    [Fact]
    public void BadOptionsAndBatchesAreRefusedWithTheirNames()
    {
        using var _ = NewDisposeScope();
        Assert.Contains("num_heads", Assert.Throws<ArgumentException>(() => (Tiny() with { NumHeads = 0 }).Validate()).Message);
        Assert.Contains("num_decoder_layers", Assert.Throws<ArgumentException>(() => (Tiny() with { NumDecoderLayers = 0 }).Build()).Message);
        Assert.Contains("dropout_rate", Assert.Throws<ArgumentException>(() => (Tiny() with { DropoutRate = 1 }).Validate()).Message);
        Assert.Contains("model.moe.top_k", Assert.Throws<ArgumentException>(() => (Tiny() with { Moe = new MoeOptions { NumExperts = 1, TopK = 2 } }).Validate()).Message);

        using var model = Model(Tiny(), 71);
        using var decoderOnly = FeatureBatch.Decoder(zeros(1, 3, dtype: int64), zeros(1, 3, dtype: int64));
        Assert.Contains(FeatureNames.EncoderInputTokens, Assert.Throws<ArgumentException>(() => model.Forward(decoderOnly)).Message);
        using var halfPacked = new FeatureBatch(new Dictionary<string, Tensor>
        {
            [FeatureNames.EncoderInputTokens] = ones(1, 4, dtype: int64),
            [FeatureNames.DecoderInputTokens] = ones(1, 3, dtype: int64),
            [FeatureNames.DecoderTargetTokens] = ones(1, 3, dtype: int64),
            [FeatureNames.DecoderSegmentIds] = ones(1, 3, dtype: int64),
            [FeatureNames.DecoderPositions] = arange(3, dtype: int64).unsqueeze(0),
        });
        Assert.Contains(FeatureNames.EncoderSegmentIds, Assert.Throws<ArgumentException>(() => model.Forward(halfPacked)).Message);
        Assert.Contains("max_sequence_length", Assert.Throws<ArgumentException>(() => model.Encode(ones(1, 41, dtype: int64))).Message);

        // A T5 config with a decoder-only key says which architecture the key belongs to.
        string file = Path.Combine(Path.GetTempPath(), $"loom-t5-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{ "architecture": "t5", "model_dim": 64, "num_layers": 2 }""");
        try
        {
            var e = Assert.Throws<ConfigException>(() => ModelPresets.Load(file, Configs));
            Assert.Contains("num_layers", e.Message);
            Assert.Contains("decoder_lm", e.Message);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
