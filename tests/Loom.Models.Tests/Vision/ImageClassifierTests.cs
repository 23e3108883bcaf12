using System.Text.Json;
using Loom.Data;
using Loom.Data.Images;
using Loom.Data.Sources;
using Loom.Models.Vision;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Vision;

public class ImageClassifierTests
{
    /// <summary>A tiny network for 8×8 images: stem 8, two stages of one block (widths 8 and 16).</summary>
    private static ImageClassifierOptions Tiny(string spatial) => new()
    {
        Spatial = spatial, ImageSize = 8, StemWidth = 8, StemKernelSize = 3, StageWidths = [8, 16], StageBlocks = [1, 1],
        KernelSize = 3, NumHeads = 1, NumClasses = 4,
    };

    private static ImageClassifier Build(ImageClassifierOptions options, long seed = 1)
    {
        using var g = Seeded.Generator(seed);
        return (ImageClassifier)options.Build(generator: g);
    }

    private static FeatureBatch Batch(Tensor pixels, Tensor labels) => new(new Dictionary<string, Tensor>
    {
        [FeatureNames.ImagePixels] = pixels,
        [FeatureNames.DecoderTargetTokens] = labels,
    });

    [Theory]
    [InlineData(ImageClassifierOptions.AttentionSpatial)]
    [InlineData(ImageClassifierOptions.ConvolutionSpatial)]
    public void ForwardGivesClassLogitsAndLossIsCrossEntropy(string spatial)
    {
        using var scope = NewDisposeScope();
        using var model = Build(Tiny(spatial));
        using var g = Seeded.Generator(2);
        var pixels = randn(new long[] { 3, 1, 8, 8 }, generator: g);
        using var batch = Batch(pixels, tensor(new long[] { 0, 3, 1 }).view(3, 1));
        var logits = model.Forward(batch).Logits;
        Assert.Equal(new long[] { 3, 1, 4 }, logits.shape);
        var expected = nn.functional.cross_entropy(logits.squeeze(1), tensor(new long[] { 0, 3, 1 }));
        Assert.Equal(expected.item<float>(), model.Loss(batch, 0).CrossEntropy.item<float>(), 5);
        Assert.Equal(FeatureLayoutOfImages, model.FeatureLayout);
    }

    private const Loom.Data.FeatureConverters.FeatureLayout FeatureLayoutOfImages = Loom.Data.FeatureConverters.FeatureLayout.Image;

    [Fact]
    public void DefaultAttentionNetworkHasFewerParametersAndItsFlopsAddUp()
    {
        using var attention = Build(new ImageClassifierOptions { Spatial = "attention" });
        using var convolution = Build(new ImageClassifierOptions { Spatial = "convolution" });
        Assert.True(attention.ParameterCount < convolution.ParameterCount);
        Assert.Equal(attention.ParameterCount, attention.ActiveParameterCount);
        // Both share everything but the spatial layers: the difference in FLOPs is theirs alone.
        var o = new ImageClassifierOptions();
        long stemAttention = new LocalSelfAttention2d(1, 16, 5, 1, 4).Flops(28, 28), stemConv = new Conv2dLayer(1, 16, 5).Flops(28, 28);
        long block1 = new LocalSelfAttention2d(16, 16, 5, 2).Flops(14, 14) - new Conv2dLayer(16, 16, 5).Flops(14, 14);
        long block2 = new LocalSelfAttention2d(32, 32, 5, 2).Flops(14, 14) - new Conv2dLayer(32, 32, 5).Flops(14, 14);
        Assert.Equal(stemAttention - stemConv + block1 + block2, attention.ForwardFlopsPerImage - convolution.ForwardFlopsPerImage);
        Assert.Equal(3.0 * convolution.ForwardFlopsPerImage, convolution.FlopsPerToken(1));
        Assert.Equal(o, o.Validate());
    }

    [Fact]
    public void TheConvolutionTwinsFlopsMatchAHandCount()
    {
        // 8×8 input: stem 1→8 3×3 at 8×8; pool to 4×4. Block 1 (8→8, inner 2): 1×1 8→2, 3×3 2→2, 1×1 2→8 at 4×4.
        // Block 2 (8→16, inner 4, downsampling): 1×1 8→4 and 3×3 4→4 at 4×4, then 1×1 4→16 and the shortcut 8→16 at 2×2. Head 16→4.
        using var model = Build(Tiny("convolution"));
        long expected = 2L * 1 * 8 * 9 * 64
            + 2L * 16 * (8 * 2 + 2 * 2 * 9 + 2 * 8)
            + 2L * 16 * (8 * 4 + 4 * 4 * 9) + 2L * 4 * (4 * 16 + 8 * 16)
            + 2L * 16 * 4;
        Assert.Equal(expected, model.ForwardFlopsPerImage);
    }

    [Fact]
    public void DecodingMembersRefuseClearly()
    {
        using var model = Build(Tiny("attention"));
        Assert.Equal(ImageClassifier.NotAGenerator, Assert.Throws<NotSupportedException>(() => model.KvCacheShape).Message);
        Assert.Equal(ImageClassifier.NotAGenerator, Assert.Throws<NotSupportedException>(() => model.Forward(zeros(1, 1, int64), null)).Message);
        Assert.Throws<NotSupportedException>(() => model.Encode(zeros(1, 1, int64)));
    }

    [Fact]
    public void OptionsRoundTripThroughJsonWithTheirTag()
    {
        ModelOptions options = Tiny("convolution");
        string json = JsonSerializer.Serialize(options, Loom.Core.LoomJson.Options);
        Assert.Contains("\"architecture\":\"image_classifier\"", json.Replace(" ", ""));
        var back = (ImageClassifierOptions)JsonSerializer.Deserialize<ModelOptions>(json, Loom.Core.LoomJson.Options)!;
        Assert.Equal("convolution", back.Spatial);
        Assert.Equal([8, 16], back.StageWidths);
        Assert.Contains(ModelArchitectures.ImageClassifier, ModelArchitectures.Names);
    }

    [Theory]
    [InlineData("spatial", "model.spatial = 'mlp' must be 'attention' or 'convolution'")]
    [InlineData("kernel", "model.kernel_size = 4 must be a positive odd integer")]
    [InlineData("stages", "model.stage_blocks has 1 entries but model.stage_widths has 2")]
    [InlineData("ratio", "model.stage_widths[1] = 18 must be a positive multiple of model.bottleneck_ratio = 4")]
    [InlineData("heads", "model.stage_widths[0] / bottleneck_ratio = 8 must be a multiple of 2 × model.num_heads = 16")]
    [InlineData("size", "model.image_size = 30 must be divisible by 4")]
    [InlineData("classes", "model.num_classes = 1 must be at least 2")]
    public void InvalidOptionsNameTheKeyAndRange(string what, string message)
    {
        var o = new ImageClassifierOptions { StageWidths = [32, 64] };
        o = what switch
        {
            "spatial" => o with { Spatial = "mlp" },
            "kernel" => o with { KernelSize = 4 },
            "stages" => o with { StageBlocks = [1] },
            "ratio" => o with { StageWidths = [32, 18] },
            "heads" => o with { NumHeads = 8 },
            "size" => o with { ImageSize = 30 },
            _ => o with { NumClasses = 1 },
        };
        Assert.StartsWith(message, Assert.Throws<ArgumentException>(() => o.Validate()).Message, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(ImageClassifierOptions.AttentionSpatial)]
    [InlineData(ImageClassifierOptions.ConvolutionSpatial)]
    public void LossFallsOnAHandfulOfRealFashionMnistImages(string spatial)
    {
        ImageDataset data;
        try
        {
            data = FashionMnist.Load();
        }
        catch (CorpusUnavailableException e)
        {
            Requires.Missing($"Fashion-MNIST is not cached and cannot be fetched: {e.Message}");
            return;
        }
        var options = new ImageClassifierOptions { Spatial = spatial, StemWidth = 8, StageWidths = [16, 32], NumHeads = 1, KernelSize = 3, StemKernelSize = 3 };
        using var model = Build(options, seed: 3);
        var batcher = new ImageBatcher([.. data.Train.Take(8)], data.Rows, data.Columns, batchSize: 8, seed: 1);
        using var optimizer = optim.Adam(model.parameters(), lr: 1e-2);
        float first = 0, last = 0;
        var losses = new List<float>();
        for (int step = 0; step < 15; step++)
        {
            using var scope = NewDisposeScope();
            using var batch = batcher.GetBatch(step);
            optimizer.zero_grad();
            var loss = model.Loss(batch, 0).Total;
            loss.backward();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
            losses.Add(last);
        }
        Assert.True(last < 0.6 * first, $"losses {string.Join(", ", losses)}");
    }
}
