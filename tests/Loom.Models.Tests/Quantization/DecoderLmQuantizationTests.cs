using Loom.Models.Layers;
using Loom.Models.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Quantization;

public class DecoderLmQuantizationTests
{
    private static DecoderLm Model(DecoderLmOptions options, ulong seed)
    {
        using var generator = new Generator(seed);
        return new DecoderLm(options, generator: generator);
    }

    private static Tensor Tokens(long batch, long length, ulong seed)
    {
        using var generator = new Generator(seed);
        return randint(0, TestModels.Tiny().VocabSize, new[] { batch, length }, generator: generator);
    }

    /// <summary>The float model and a quantized copy with the same weights.</summary>
    private static (DecoderLm Float, DecoderLm Quantized) Pair(DecoderLmOptions options, ulong seed)
    {
        var original = Model(options, seed);
        var quantized = Model(options, seed);
        quantized.Quantize(QuantizationMode.Int8);
        original.eval();
        return (original, quantized);
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void ReportCountsEveryKernelExactly(bool sharedEmbeddings, bool useBias)
    {
        using var _ = NewDisposeScope();
        var o = TestModels.Tiny(kvHeads: 2) with { SharedEmbeddings = sharedEmbeddings, UseBias = useBias };
        using var model = Model(o, 1);
        long floatBytes = model.ParameterCount * 4;

        var report = model.Quantize(QuantizationMode.Int8);

        // Per layer: wq, wk, wv, wo, gate, up, down; elements out·in and one scale per output row.
        long qkvo = o.NumHeads * o.HeadDim;
        long kv = o.NumKvHeads * o.HeadDim;
        long elements = o.NumLayers * (2 * qkvo * o.ModelDim + 2 * kv * o.ModelDim + 3L * o.MlpDim * o.ModelDim);
        long rows = o.NumLayers * (qkvo + 2 * kv + o.ModelDim + 2L * o.MlpDim + o.ModelDim);
        int kernels = 7 * o.NumLayers;
        if (!sharedEmbeddings)
        {
            elements += (long)o.VocabSize * o.ModelDim; // the unshared output projection is a kernel too
            rows += o.VocabSize;
            kernels++;
        }
        Assert.Equal(new QuantizationReport(QuantizationMode.Int8, kernels, elements * 4, elements + rows * 4, floatBytes, floatBytes - elements * 4 + rows * 4 + elements), report);
        Assert.Same(report, model.Quantization);
        Assert.Equal(report.ModelBytesAfter, model.ParameterCount * 4 + report.LinearBytesAfter); // what is left as parameters is float
        Assert.InRange(report.LinearRatio, 3.5, 4.0);
        Assert.Matches(@"^quantized \d+ linear weights to int8: [\d.]+ kB -> [\d.]+ kB \(3\.\dx smaller\); model [\d.]+ kB -> [\d.]+ kB \(\d\.\dx smaller\)$", report.ToString());
    }

    [Fact]
    public void FloatKernelsAreReplacedByInt8BuffersAndEmbeddingsAndNormsStayFloat()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TestModels.Tiny() with { SharedEmbeddings = false }, 2);
        model.Quantize(QuantizationMode.Int8);

        var dense = model.modules().OfType<Dense>().ToList();
        Assert.All(dense, d => Assert.True(d.IsQuantized));
        Assert.Throws<InvalidOperationException>(() => dense[0].Weight);
        var state = model.state_dict();
        Assert.DoesNotContain(state.Keys, k => k.EndsWith(".weight", StringComparison.Ordinal) && (k.Contains(".attn.") || k.Contains(".mlp.") || k.StartsWith("lm_head", StringComparison.Ordinal)));
        Assert.Equal(dense.Count, state.Keys.Count(k => k.EndsWith(".weight_int8", StringComparison.Ordinal)));
        Assert.All(state.Where(kv => kv.Key.EndsWith("weight_int8", StringComparison.Ordinal)), kv => Assert.Equal(ScalarType.Int8, kv.Value.dtype));
        Assert.Equal(ScalarType.Float32, state["embed"].dtype);
        Assert.Equal(ScalarType.Float32, state["final_norm.weight"].dtype);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void QuantizedLogitsStayCloseToTheFloatModel(bool sharedEmbeddings)
    {
        using var _ = NewDisposeScope();
        var (original, quantized) = Pair(TestModels.Tiny(kvHeads: 2) with { SharedEmbeddings = sharedEmbeddings }, 3);
        using (original)
        using (quantized)
        {
            var tokens = Tokens(4, 24, seed: 4);
            using var noGrad = no_grad();
            var expected = original.forward(tokens);                 // (4, 24, V)
            var actual = quantized.forward(tokens);                  // (4, 24, V)
            double relative = ((actual - expected).norm() / expected.norm()).item<float>();
            Assert.InRange(relative, 1e-6, 0.02); // changed, but by well under 2%
            double agreement = actual.argmax(-1).eq(expected.argmax(-1)).to(float32).mean().item<float>();
            Assert.True(agreement >= 0.95, $"greedy next-token choices agree at {agreement:P0} of positions");
        }
    }

    [Fact]
    public void GreedyDecodingMostlyAgreesWithTheFloatModel()
    {
        using var _ = NewDisposeScope();
        var (original, quantized) = Pair(TestModels.Tiny(), 5);
        using (original)
        using (quantized)
        {
            var prompt = Tokens(3, 4, seed: 6);
            var a = Greedy(original, prompt, 12);
            var b = Greedy(quantized, prompt, 12);
            double agreement = a.eq(b).to(float32).mean().item<float>();
            Assert.True(agreement >= 0.8, $"greedy continuations agree at {agreement:P0} of tokens");
        }
    }

    private static Tensor Greedy(DecoderLm model, Tensor prompt, int steps)
    {
        using var noGrad = no_grad();
        var sequence = prompt;
        for (int i = 0; i < steps; i++)
            sequence = cat(new[] { sequence, model.forward(sequence)[.., -1].argmax(-1, keepdim: true) }, 1); // (B, T+1)
        return sequence.narrow(1, prompt.shape[1], steps); // (B, steps)
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void QuantizedModelWorksWithTheKvCache(bool parallel)
    {
        using var _ = NewDisposeScope();
        var o = TestModels.Tiny(kvHeads: 2, parallel: parallel);
        using var model = Model(o, 7);
        model.Quantize(QuantizationMode.Int8);
        var tokens = Tokens(2, 10, seed: 8);
        using var noGrad = no_grad();
        var full = model.forward(tokens); // (2, 10, V)

        using var cache = KvCache.For(model, batchSize: 2, capacity: 12);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 6));
        var steps = Enumerable.Range(6, 4).Select(i => cache.Run(model, tokens.narrow(1, i, 1)));
        var cached = cat(new[] { prefill }.Concat(steps).ToList(), 1);
        Assert.True(cached.allclose(full, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void QuantizedModelWorksWithPackedRows()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TestModels.Tiny(), 9);
        model.Quantize(QuantizationMode.Int8);
        var first = Tokens(1, 5, seed: 10);
        var second = Tokens(1, 7, seed: 11);
        var packed = cat(new[] { first, second }, 1);                                                    // (1, 12)
        var segments = tensor(new long[] { 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2 }).unsqueeze(0);
        var positions = cat(new[] { arange(5L), arange(7L) }, 0).unsqueeze(0);
        using var noGrad = no_grad();
        var logits = model.Forward(packed, new PackedLayout(segments, positions));                    // (1, 12, V)
        Assert.True(logits.narrow(1, 0, 5).allclose(model.forward(first), rtol: 1e-4, atol: 1e-5));
        Assert.True(logits.narrow(1, 5, 7).allclose(model.forward(second), rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void QuantizedModelIsForInferenceOnly()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TestModels.Tiny(), 12);
        model.Quantize(QuantizationMode.Int8);
        Assert.False(model.training);
        model.train();
        var e = Assert.Throws<InvalidOperationException>(() => model.Loss(Tokens(1, 4, 13), Tokens(1, 4, 14), zLossWeight: 0));
        Assert.Contains("inference only", e.Message);
        Assert.Throws<InvalidOperationException>(() => model.Quantize(QuantizationMode.Int8));
        Assert.Throws<ArgumentException>(() => Model(TestModels.Tiny(), 12).Quantize(QuantizationMode.None));
    }

    [Fact]
    public void ConvertingTheModelKeepsTheValuesInt8()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TestModels.Tiny(), 15);
        model.Quantize(QuantizationMode.Int8);
        var tokens = Tokens(1, 6, seed: 16);
        using var noGrad = no_grad();
        var before = model.forward(tokens);
        model.to(float64); // TorchSharp converts floating-point state only and rebinds the fields
        var dense = model.modules().OfType<Dense>().First();
        Assert.Equal(ScalarType.Int8, dense.QuantizedWeight!.Value.Values.dtype);
        Assert.Equal(ScalarType.Float64, dense.QuantizedWeight!.Value.Scales.dtype);
        var after = model.forward(tokens);
        Assert.Equal(ScalarType.Float64, after.dtype);
        Assert.True(after.to(float32).allclose(before, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void CheckpointsLoadQuantizedAndQuantizedModelsAreNotSaved()
    {
        using var _ = NewDisposeScope();
        var directory = Directory.CreateTempSubdirectory("loom-int8-");
        try
        {
            var options = TestModels.Tiny();
            using var model = Model(options, 17);
            ModelCheckpoint.Save(directory.FullName, model, new ModelManifest { Model = options });
            var (loaded, _) = ModelCheckpoint.Load(directory.FullName, quantization: QuantizationMode.Int8);
            using (loaded)
            {
                Assert.NotNull(loaded.Quantization);
                model.Quantize(QuantizationMode.Int8);
                var tokens = Tokens(1, 8, seed: 18);
                using var noGrad = no_grad();
                Assert.True(loaded.Forward(tokens, null).eq(model.forward(tokens)).all().item<bool>());
                var e = Assert.Throws<InvalidOperationException>(() => ModelCheckpoint.Save(directory.FullName, loaded, new ModelManifest { Model = options }));
                Assert.Contains("--quantize int8", e.Message);
            }
            var (plain, _) = ModelCheckpoint.Load(directory.FullName);
            using (plain) Assert.Null(plain.Quantization);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
