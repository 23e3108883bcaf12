using Loom.Data;
using Loom.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>bfloat16 compute over float32 master weights (<see cref="ComputePrecision"/>), in both families.</summary>
public class MixedPrecisionTests
{
    public static TheoryData<string> Models => ["decoder", "decoder-untied-learned", "decoder-packed", "moe", "t5", "t5-packed"];

    private static LanguageModel Build(string name) => name switch
    {
        "decoder" or "decoder-packed" => Seeded.Model(TinyModels.Decoder(), 3),
        "decoder-untied-learned" => Seeded.Model(TinyModels.Decoder(parallel: false) with { SharedEmbeddings = false, Positions = PositionEncoding.Learned }, 3),
        "moe" => Seeded.Model(TinyModels.MoeDecoder(capacityFactor: null), 3),
        _ => Seeded.Model(TinyModels.T5(vocabSize: 40), 3),
    };

    /// <summary>A batch of two rows of 16 tokens; "-packed" holds two examples per row.</summary>
    private static FeatureBatch Batch(string name)
    {
        using var g = Seeded.Generator(4);
        var tokens = randint(1, 40, [2, 16], generator: g); // (B, T)
        var targets = randint(1, 40, [2, 16], generator: g); // (B, T)
        var features = new Dictionary<string, Tensor>
        {
            [FeatureNames.DecoderInputTokens] = tokens,
            [FeatureNames.DecoderTargetTokens] = targets,
        };
        if (name.StartsWith("t5", StringComparison.Ordinal)) features[FeatureNames.EncoderInputTokens] = randint(1, 40, [2, 12], generator: g);
        if (name.EndsWith("-packed", StringComparison.Ordinal))
        {
            var segments = cat([ones(2, 10, int64), full(2, 6, 2L, int64)], 1);                             // (B, T)
            var positions = cat([arange(10, dtype: int64), arange(6, dtype: int64)]).unsqueeze(0).expand(2, 16); // (B, T)
            features[FeatureNames.DecoderSegmentIds] = segments;
            features[FeatureNames.DecoderPositions] = positions.contiguous();
            features[FeatureNames.DecoderLossWeights] = ones(2, 16);
            if (features.ContainsKey(FeatureNames.EncoderInputTokens))
            {
                features[FeatureNames.EncoderSegmentIds] = cat([ones(2, 7, int64), full(2, 5, 2L, int64)], 1);
                features[FeatureNames.EncoderPositions] = cat([arange(7, dtype: int64), arange(5, dtype: int64)]).unsqueeze(0).expand(2, 12).contiguous();
            }
        }
        return new FeatureBatch(features);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void ABFloat16ForwardIsCloseToFloat32AndSwitchingBackIsExact(string name)
    {
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        using var model = Build(name);
        model.eval();
        using var batch = Batch(name);
        var reference = model.Forward(batch).Logits;                 // (B, T, V) float32
        var referenceLoss = model.Loss(batch, 1e-4).CrossEntropy.item<float>();

        model.UsePrecision(ComputePrecision.BFloat16);
        Assert.Equal(ComputePrecision.BFloat16, model.Precision);
        var logits = model.Forward(batch).Logits;
        Assert.Equal(ScalarType.BFloat16, logits.dtype);               // the output projection ran in bf16
        var loss = model.Loss(batch, 1e-4);
        Assert.Equal(ScalarType.Float32, loss.Total.dtype);            // the loss is taken in float32
        double relative = ((logits.to(float32) - reference).norm() / reference.norm()).item<float>();
        Assert.True(relative < 0.03, $"relative error of the bf16 logits {relative}");
        Assert.True(Math.Abs(loss.CrossEntropy.item<float>() - referenceLoss) < 0.02, $"bf16 loss {loss.CrossEntropy.item<float>()} against {referenceLoss}");

        model.UsePrecision(ComputePrecision.Float32);
        Assert.True(model.Forward(batch).Logits.eq(reference).all().item<bool>(), "float32 after bf16 differs from the float32 forward");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void BFloat16GradientsLandOnTheFloat32MasterWeights(string name)
    {
        using var _ = NewDisposeScope();
        using var model = Build(name);
        model.train();
        model.UsePrecision(ComputePrecision.BFloat16);
        using var batch = Batch(name);
        model.Loss(batch, 1e-4).Total.backward();
        foreach (var (key, p) in model.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.NotNull(p.grad);
            Assert.Equal(ScalarType.Float32, p.grad!.dtype);
            Assert.True(p.grad.isfinite().all().item<bool>(), $"{key}'s gradient is not finite");
        }
    }

    [Fact]
    public void ConfigNamesParseAndUnknownOnesAreRefusedWithTheChoices()
    {
        Assert.Equal(ComputePrecision.Float32, ComputePrecisions.Parse("fp32"));
        Assert.Equal(ComputePrecision.BFloat16, ComputePrecisions.Parse("bf16"));
        Assert.Null(ComputePrecision.Float32.Dtype());
        var e = Assert.Throws<ArgumentException>(() => ComputePrecisions.Parse("fp8"));
        Assert.Equal("training.precision = 'fp8' is unknown: use \"fp32\" (float32 throughout), \"bf16\" (bfloat16 matmuls and attention over float32 weights) or \"fp16\" (float16, with dynamic loss scaling)", e.Message);
    }
}
