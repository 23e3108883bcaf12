using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Models.VisionLanguage;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

public class ImageTextEngineTests
{
    private static readonly ExtraIdsVocabulary Vocabulary = new(new ByteVocabulary(), 1); // 259 ids: bytes, pad, eos, <extra_id_0> = 258
    private const int Placeholder = 258;

    private static LanguageModel Model()
    {
        using var generator = new Generator(23);
        return TinyModels.VisionLanguage().Build(generator: generator);
    }

    private static float[] RandomImage(Random random) => [.. Enumerable.Range(0, 64).Select(_ => (float)random.NextDouble())];

    /// <summary>Text with <paramref name="images"/> runs of 4 placeholder ids at random places.</summary>
    private static int[] RandomPrompt(Random random, int images)
    {
        var tokens = Enumerable.Range(0, random.Next(1, 8)).Select(_ => random.Next(0, 256)).ToList();
        for (int i = 0; i < images; i++)
        {
            tokens.InsertRange(random.Next(0, tokens.Count + 1), Enumerable.Repeat(Placeholder, 4));
            tokens.AddRange(Enumerable.Range(0, random.Next(0, 4)).Select(_ => random.Next(0, 256)));
        }
        return [.. tokens];
    }

    private static async Task<List<int>> Collect(IGenerationEngine engine, GenerationRequest request)
    {
        var tokens = new List<int>();
        await foreach (var update in engine.GenerateAsync(request)) tokens.AddRange(update.Tokens);
        return tokens;
    }

    /// <summary>The cache-free reference: a full forward pass over the whole sequence per token.</summary>
    private static List<int> Reference(LanguageModel model, GenerationRequest request)
    {
        using var prompt = tensor(request.Prompt.Select(t => (long)t).ToArray(), [1, request.Prompt.Count], int64);
        using var pixels = tensor(request.Images.SelectMany(i => i).ToArray(), [1, request.Images.Count, 8, 8], float32);
        return [.. ReferenceImageTextDecoder.Greedy(model, prompt, pixels, request.Sampling.MaxTokens, eosId: -1)[0]];
    }

    [Fact]
    public async Task Greedy_generation_with_images_through_the_engine_equals_the_uncached_full_forward()
    {
        using var model = Model();
        // Blocks of 4 and a budget of 5 tokens a step: prompts are prefilled in chunks that cut image runs apart, and
        // requests with different images but equal placeholder ids run side by side.
        using var engine = new ContinuousBatchingEngine(model, Vocabulary, "vlm", new EngineOptions { BlockSize = 4, TokenBudget = 5, MaxRunning = 3 });
        var random = new Random(5);
        var requests = Enumerable.Range(0, 6).Select(i =>
        {
            int images = 1 + i % 2;
            return new GenerationRequest(RandomPrompt(random, images), new SamplingOptions { Temperature = 0, MaxTokens = random.Next(3, 10), StopAtEos = false })
            {
                Images = [.. Enumerable.Range(0, images).Select(_ => RandomImage(random))],
            };
        }).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        for (int i = 0; i < requests.Count; i++) Assert.Equal(Reference(model, requests[i]), outputs[i]);
    }

    [Fact]
    public async Task Prefix_caching_shares_blocks_only_between_equal_images()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Vocabulary, "vlm", new EngineOptions { BlockSize = 4, MaxRunning = 1 });
        var random = new Random(6);
        int[] prompt = [1, 2, 3, .. Enumerable.Repeat(Placeholder, 4), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        var greedy = new SamplingOptions { Temperature = 0, MaxTokens = 6, StopAtEos = false };
        var first = new GenerationRequest(prompt, greedy) { Images = [RandomImage(random)] };
        var other = new GenerationRequest(prompt, greedy) { Images = [RandomImage(random)] };

        await Collect(engine, first);
        long hits = engine.Stats.PrefixCacheHitTokens;
        var otherOutput = await Collect(engine, other);           // same tokens, another image: no block may be reused
        Assert.Equal(hits, engine.Stats.PrefixCacheHitTokens);
        Assert.Equal(Reference(model, other), otherOutput);
        var again = await Collect(engine, first with { });       // the same image again: its prompt blocks are reused
        Assert.True(engine.Stats.PrefixCacheHitTokens > hits, "a prompt with the same image should hit the prefix cache");
        Assert.Equal(Reference(model, first), again);
    }

    [Fact]
    public async Task A_text_only_model_refuses_images()
    {
        using var generator = new Generator(1);
        using var model = TinyModels.Decoder().Build(generator: generator);
        using var engine = new ContinuousBatchingEngine(model, new ByteVocabulary(), "text", new EngineOptions { BlockSize = 4 });
        Assert.Null(((IGenerationEngine)engine).ImageInput);
        var request = new GenerationRequest([1, 2, 3], new SamplingOptions { Temperature = 0, MaxTokens = 2 }) { Images = [new float[64]] };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Collect(engine, request));
        Assert.Contains("reads text only", e.Message);
    }

    [Fact]
    public async Task Placeholders_that_do_not_match_the_images_are_refused()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Vocabulary, "vlm", new EngineOptions { BlockSize = 4 });
        var request = new GenerationRequest([1, Placeholder, Placeholder, 2], new SamplingOptions { Temperature = 0, MaxTokens = 2 }) { Images = [new float[64]] };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Collect(engine, request));
        Assert.Contains("2 image placeholder ids but its 1 images need 4", e.Message);
        var wrongSize = new GenerationRequest([1, .. Enumerable.Repeat(Placeholder, 4)], new SamplingOptions { Temperature = 0, MaxTokens = 2 }) { Images = [new float[10]] };
        e = await Assert.ThrowsAsync<ArgumentException>(() => Collect(engine, wrongSize));
        Assert.Contains("8x8", e.Message);
    }

    [Fact]
    public void Png_and_jpeg_decode_to_greyscale_of_the_models_size_and_other_formats_are_refused()
    {
        var pixels = Enumerable.Range(0, 16).Select(i => i / 15f).ToArray();
        var decoded = GreyscaleImages.Decode(GreyscaleImages.EncodePng(pixels, 4), 4);
        Assert.Equal(pixels.Select(p => MathF.Round(p * 255)), decoded.Select(p => MathF.Round(p * 255)));
        Assert.Equal(64, GreyscaleImages.Decode(GreyscaleImages.EncodePng(pixels, 4), 8).Length);
        using (var bitmap = new SkiaSharp.SKBitmap(4, 4))
        using (var image = SkiaSharp.SKImage.FromBitmap(bitmap))
        using (var jpeg = image.Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 90))
            Assert.Equal(16, GreyscaleImages.Decode(jpeg.ToArray(), 4).Length);
        // GIF89a, 1x1, one colour: a real image of a format the model does not take.
        byte[] gif = Convert.FromBase64String("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7");
        Assert.Contains("unsupported image format GIF", Assert.Throws<ImageInputException>(() => GreyscaleImages.Decode(gif, 4)).Message);
        Assert.Contains("malformed", Assert.Throws<ImageInputException>(() => GreyscaleImages.Decode("not an image"u8, 4)).Message);
        // A PNG cut off halfway through its pixel data: the header reads, the pixels do not.
        var noise = new Random(1);
        var png = GreyscaleImages.EncodePng([.. Enumerable.Range(0, 64 * 64).Select(_ => (float)noise.NextDouble())], 64);
        Assert.Contains("corrupt or truncated", Assert.Throws<ImageInputException>(() => GreyscaleImages.Decode(png.AsSpan(0, png.Length / 2), 4)).Message);
    }
}
