using Loom.Data;
using Loom.Models.VisionLanguage;
using Loom.Testing;
using static TorchSharp.torch;

namespace Loom.Models.Tests.VisionLanguage;

public class VisionLanguageModelTests
{
    private const int Placeholder = 258;

    [Fact]
    public void Patchify_cuts_row_major_patches_with_row_major_pixels()
    {
        // Reference: patch n = (r, c) with n = r · (W/P) + c holds pixel (r·P + i, c·P + j) at k = i·P + j.
        const int m = 2, h = 8, w = 12, p = 4;
        using var images = arange(m * h * w, float32).reshape(m, h, w);
        using var patches = VisionEncoder.Patchify(images, p);
        Assert.Equal(new long[] { m, (h / p) * (w / p), p * p }, patches.shape);
        var got = patches.data<float>().ToArray();
        var pixels = images.data<float>().ToArray();
        for (int img = 0; img < m; img++)
            for (int r = 0; r < h / p; r++)
                for (int c = 0; c < w / p; c++)
                    for (int i = 0; i < p; i++)
                        for (int j = 0; j < p; j++)
                        {
                            int n = r * (w / p) + c, k = i * p + j;
                            float expected = pixels[img * h * w + (r * p + i) * w + (c * p + j)];
                            Assert.Equal(expected, got[(img * ((h / p) * (w / p)) + n) * p * p + k]);
                        }
    }

    [Fact]
    public void Soft_tokens_land_exactly_at_placeholder_positions_in_row_major_order()
    {
        var options = TinyModels.VisionLanguage();
        using var model = new VisionLanguageModel(options, generator: new Generator(1));
        // Two rows, images interleaved with text at different places: row 0 has two images, row 1 one.
        int k = options.TokensPerImage;
        int[] row0 = [5, .. Enumerable.Repeat(Placeholder, k), 6, 7, .. Enumerable.Repeat(Placeholder, k), 8];
        int[] row1 = [9, 10, 11, .. Enumerable.Repeat(Placeholder, k), 14, 15, 16, 17, 18];
        Assert.Equal(row0.Length, row1.Length);
        using var tokens = tensor(row0.Concat(row1).Select(t => (long)t).ToArray(), [2, row0.Length], int64);
        using var mask = tokens.eq(Placeholder);
        using var soft = randn(3 * k, options.Decoder.ModelDim, generator: new Generator(2)); // (N, D): image 0, 1 of row 0, image 0 of row 1
        using var x = model.Embed(tokens, soft, mask, null);
        using var text = model.Decoder.Embed(tokens, null);
        int next = 0;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < row0.Length; t++)
            {
                int id = b == 0 ? row0[t] : row1[t];
                var expected = id == Placeholder ? soft[next++] : text[b, t];
                Assert.True(x[b, t].equal(expected).all().item<bool>(), $"row {b} position {t}");
            }
        Assert.Equal(3 * k, next);
    }

    [Fact]
    public void An_image_changes_only_the_logits_after_its_placeholders()
    {
        var options = TinyModels.VisionLanguage();
        using var model = new VisionLanguageModel(options, generator: new Generator(1));
        model.eval();
        int k = options.TokensPerImage;
        long[] ids = [.. new[] { 5, 6, 7 }.Concat(Enumerable.Repeat(Placeholder, k)).Concat([8, 9]).Select(t => (long)t)];
        using var tokens = tensor(ids, [1, ids.Length], int64);
        using var mask = tokens.eq(Placeholder);
        using var scope = NewDisposeScope();
        var a = model.Forward(tokens, model.EncodeImages(rand(1, 8, 8, generator: new Generator(3))).reshape(-1, options.Decoder.ModelDim), mask, null);
        var b = model.Forward(tokens, model.EncodeImages(rand(1, 8, 8, generator: new Generator(4))).reshape(-1, options.Decoder.ModelDim), mask, null);
        Assert.True(a[0, ..3].allclose(b[0, ..3], rtol: 0, atol: 1e-6), "text before the image must not see it");
        Assert.False(a[0, -1].allclose(b[0, -1], rtol: 0, atol: 1e-4), "text after the image must see it");
    }

    [Fact]
    public void A_row_whose_placeholders_do_not_match_its_images_is_refused()
    {
        var options = TinyModels.VisionLanguage();
        using var model = new VisionLanguageModel(options, generator: new Generator(1));
        using var tokens = tensor(new long[] { 5, Placeholder, Placeholder, 6 }, [1, 4], int64);
        var features = new Dictionary<string, Tensor>
        {
            [FeatureNames.DecoderInputTokens] = tokens.clone(),
            [FeatureNames.DecoderTargetTokens] = tokens.clone(),
            [FeatureNames.ImagePixels] = zeros(1, 1, 8, 8),
        };
        using var batch = new FeatureBatch(features);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(batch));
        Assert.Contains("2 image positions but 4 soft tokens", e.Message);
    }

    [Fact]
    public void Checkpoint_round_trip_gives_the_same_logits_for_an_image_prompt()
    {
        var options = TinyModels.VisionLanguage();
        using var dir = new TempDirectory();
        using var model = options.Build(generator: new Generator(7));
        model.eval();
        ModelCheckpoint.Save(dir.Path, model, new ModelManifest { Architecture = options.Architecture, Model = options, Vocabulary = "byte+extra_ids=1" });
        var (loaded, manifest) = ModelCheckpoint.Load(dir.Path);
        using (loaded)
        {
            Assert.IsType<VisionLanguageModel>(loaded);
            Assert.Equal(options, manifest.Model);
            Assert.Equal(new ImageInputSpec(8, 4, Placeholder), loaded.ImageInput);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var tokens = tensor(new long[] { 5, Placeholder, Placeholder, Placeholder, Placeholder, 6, 7 }, [1, 7], int64);
            var pixels = rand(1, 8, 8, generator: new Generator(5));
            var mask = tokens.eq(Placeholder);
            var expected = model.Forward(tokens, model.EncodeImages(pixels).reshape(-1, 32), mask, null);
            var actual = loaded.Forward(tokens, loaded.EncodeImages(pixels).reshape(-1, 32), mask, null);
            Assert.True(actual.equal(expected).all().item<bool>());
        }
    }

    [Fact]
    public void A_text_only_model_says_it_reads_no_images()
    {
        using var model = TinyModels.Decoder().Build(generator: new Generator(1));
        Assert.Null(model.ImageInput);
        var e = Assert.Throws<NotSupportedException>(() => model.EncodeImages(zeros(1, 8, 8)));
        Assert.Contains("reads text only", e.Message);
    }

    public static TheoryData<string, string> InvalidOptions => new()
    {
        { "patch", "model.image_size = 8 must be a multiple of model.patch_size = 3" },
        { "heads", "model.vision_heads = 3 must divide model.vision_dim = 16" },
        { "token", "model.image_token_id = 259 must be in [0, 258]" },
        { "positions", "model.decoder.positions = Learned is not supported for vision_language" },
        { "context", "an image's 4 soft tokens do not fit model.max_sequence_length = 3" },
        { "dim", "model.vision_dim = 0 must be a positive integer" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void Invalid_options_give_one_line_errors_naming_the_key(string which, string message)
    {
        var o = TinyModels.VisionLanguage();
        o = which switch
        {
            "patch" => o with { PatchSize = 3 },
            "heads" => o with { VisionHeads = 3 },
            "token" => o with { ImageTokenId = 259 },
            "positions" => o with { Decoder = o.Decoder with { Positions = PositionEncoding.Learned } },
            "context" => o with { MaxSequenceLength = 3 },
            _ => o with { VisionDim = 0 },
        };
        var e = Assert.Throws<ArgumentException>(() => o.Validate());
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_decoder_takes_the_models_vocabulary_and_context()
    {
        var o = TinyModels.VisionLanguage() with { VocabSize = 300, MaxSequenceLength = 40 };
        Assert.Equal(300, o.DecoderOptions.VocabSize);
        Assert.Equal(40, o.DecoderOptions.MaxSequenceLength);
        Assert.Contains(ModelArchitectures.VisionLanguage, ModelArchitectures.Names);
    }
}
