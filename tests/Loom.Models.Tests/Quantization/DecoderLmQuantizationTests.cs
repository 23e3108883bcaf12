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
        return randint(0, TinyModels.Decoder().VocabSize, new[] { batch, length }, generator: generator);
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
        var o = TinyModels.Decoder(kvHeads: 2) with { SharedEmbeddings = sharedEmbeddings, UseBias = useBias };
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
        using var model = Model(TinyModels.Decoder() with { SharedEmbeddings = false }, 2);
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
        var (original, quantized) = Pair(TinyModels.Decoder(kvHeads: 2) with { SharedEmbeddings = sharedEmbeddings }, 3);
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
        var (original, quantized) = Pair(TinyModels.Decoder(), 5);
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

    [Fact]
    public void DirectKernelDecodesLikeAFloatModelOfTheDequantizedWeights()
    {
        using var _ = NewDisposeScope();
        var o = TinyModels.Decoder(kvHeads: 2) with { SharedEmbeddings = false };
        using var quantized = Model(o, 19);
        quantized.Quantize(QuantizationMode.Int8);
        using var reference = Model(o, 19); // the same seed: the same embeddings and norms
        reference.eval();
        var kernels = quantized.modules().OfType<Dense>().Zip(reference.modules().OfType<Dense>()).ToList();
        Assert.Equal(7 * o.NumLayers + 1, kernels.Count);
        using (no_grad())
        {
            foreach (var (q, f) in kernels)
            {
                var (values, scales) = q.QuantizedWeight!.Value;
                f.Weight.copy_(Int8Weights.Dequantize(values, scales, float32));
            }
        }
        var (firstValues, _) = kernels[0].First.QuantizedWeight!.Value;
        using (no_grad()) Assert.Equal(Int8Weights.DirectKernelIsSupported, Int8Weights.UsesDirectKernel(zeros(1, 1, o.ModelDim), firstValues)); // a decode step's input

        var prompt = Tokens(1, 5, seed: 20);
        var (tokens, logits) = CachedGreedy(quantized, prompt, 16);
        var (expectedTokens, expectedLogits) = CachedGreedy(reference, prompt, 16);
        Assert.Equal(expectedTokens, tokens);
        Assert.True(logits.allclose(expectedLogits, rtol: 1e-4, atol: 1e-4), $"max difference {(logits - expectedLogits).abs().max().item<float>()}");
    }

    /// <summary>Batch-1 greedy decoding through the KV cache: the prompt's prefill, then one token a step; the tokens and each step's logits, (steps, V).</summary>
    private static (long[] Tokens, Tensor Logits) CachedGreedy(DecoderLm model, Tensor prompt, int steps)
    {
        using var noGrad = no_grad();
        using var cache = new KvCache(model.KvCacheShape, batchSize: 1, capacity: (int)prompt.shape[1] + steps);
        var last = cache.Run(model, prompt)[.., -1];                          // (1, V)
        var tokens = new List<long>();
        var logits = new List<Tensor>();
        for (int i = 0; i < steps; i++)
        {
            logits.Add(last);
            long next = last.argmax(-1).item<long>();
            tokens.Add(next);
            last = cache.Run(model, tensor(new[] { next }).unsqueeze(0))[.., -1]; // (1, V)
        }
        return (tokens.ToArray(), cat(logits, 0));                            // (steps, V)
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void QuantizedModelWorksWithTheKvCache(bool parallel)
    {
        using var _ = NewDisposeScope();
        var o = TinyModels.Decoder(kvHeads: 2, parallel: parallel);
        using var model = Model(o, 7);
        model.Quantize(QuantizationMode.Int8);
        var tokens = Tokens(2, 10, seed: 8);
        using var noGrad = no_grad();
        var full = model.forward(tokens); // (2, 10, V)

        using var cache = new KvCache(model.KvCacheShape, batchSize: 2, capacity: 12);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 6));
        var steps = Enumerable.Range(6, 4).Select(i => cache.Run(model, tokens.narrow(1, i, 1)));
        var cached = cat(new[] { prefill }.Concat(steps).ToList(), 1);
        Assert.True(cached.allclose(full, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void QuantizedModelWorksWithPackedRows()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TinyModels.Decoder(), 9);
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
        using var model = Model(TinyModels.Decoder(), 12);
        model.Quantize(QuantizationMode.Int8);
        Assert.False(model.training);
        model.train();
        var e = Assert.Throws<InvalidOperationException>(() => model.Loss(Tokens(1, 4, 13), Tokens(1, 4, 14), zLossWeight: 0));
        Assert.Contains("inference only", e.Message);
        Assert.Throws<InvalidOperationException>(() => model.Quantize(QuantizationMode.Int8));
        Assert.Throws<ArgumentException>(() => Model(TinyModels.Decoder(), 12).Quantize(QuantizationMode.None));
    }

    [Fact]
    public void ConvertingTheModelKeepsTheValuesInt8()
    {
        using var _ = NewDisposeScope();
        using var model = Model(TinyModels.Decoder(), 15);
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
        using var directory = new TempDirectory("loom-int8-");
        {
            var options = TinyModels.Decoder();
            using var model = Model(options, 17);
            ModelCheckpoint.Save(directory.Path, model, new ModelManifest { Model = options });
            var (loaded, _) = ModelCheckpoint.Load(directory.Path, quantization: QuantizationMode.Int8);
            using (loaded)
            {
                Assert.NotNull(loaded.Quantization);
                model.Quantize(QuantizationMode.Int8);
                var tokens = Tokens(1, 8, seed: 18);
                using var noGrad = no_grad();
                Assert.True(loaded.Forward(tokens, null).eq(model.forward(tokens)).all().item<bool>());
                var e = Assert.Throws<InvalidOperationException>(() => ModelCheckpoint.Save(directory.Path, loaded, new ModelManifest { Model = options }));
                Assert.Contains("--quantize int8", e.Message);
            }
            var (plain, _) = ModelCheckpoint.Load(directory.Path);
            using (plain) Assert.Null(plain.Quantization);
        }
    }
}
