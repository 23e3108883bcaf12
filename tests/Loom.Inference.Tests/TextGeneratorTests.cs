using Loom.Inference;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests;

public class TextGeneratorTests
{
    private static DecoderLm Model(int kvHeads, bool parallel, PositionEncoding positions = PositionEncoding.Rotary)
    {
        return Seeded.Model(new DecoderLmOptions
        {
            VocabSize = 50, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = kvHeads, HeadDim = 8, MlpDim = 64,
            MaxSequenceLength = 64, ParallelBlock = parallel, Positions = positions,
        }, 11);
    }

    [Theory]
    [InlineData(1, true, PositionEncoding.Rotary)]
    [InlineData(2, false, PositionEncoding.Rotary)]
    [InlineData(4, true, PositionEncoding.Learned)]
    public void CachedGenerationEqualsRecomputingThePrefix(int kvHeads, bool parallel, PositionEncoding positions)
    {
        using var model = Model(kvHeads, parallel, positions);
        var generator = new TextGenerator(model, eosId: 49);
        int[] prompt = { 3, 14, 15, 9, 26, 5 };
        foreach (var options in new[]
                 {
                     new SamplingOptions { Temperature = 0, MaxTokens = 40, StopAtEos = false },
                     new SamplingOptions { Temperature = 1.0, TopK = 20, TopP = 0.9, Seed = 5, MaxTokens = 40, StopAtEos = false },
                 })
        {
            var cached = generator.Generate(prompt, options).ToList();
            var reference = generator.GenerateWithoutCache(prompt, options).ToList();
            Assert.Equal(40, cached.Count);
            Assert.Equal(reference, cached);
        }
    }

    [Fact]
    public void SameSeedSameTextDifferentSeedDifferentText()
    {
        using var model = Model(1, true);
        var generator = new TextGenerator(model, eosId: 49);
        int[] prompt = { 1, 2, 3 };
        var a = generator.Generate(prompt, new SamplingOptions { Seed = 1, MaxTokens = 30, StopAtEos = false }).ToList();
        var b = generator.Generate(prompt, new SamplingOptions { Seed = 1, MaxTokens = 30, StopAtEos = false }).ToList();
        var c = generator.Generate(prompt, new SamplingOptions { Seed = 2, MaxTokens = 30, StopAtEos = false }).ToList();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void StopsAtContextLengthAndRefusesOverlongPrompts()
    {
        using var model = Model(1, true);
        var generator = new TextGenerator(model, eosId: 49);
        var tokens = generator.Generate(Enumerable.Repeat(7, 60).ToArray(), new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false }).ToList();
        Assert.Equal(4, tokens.Count); // 60 + 4 = the 64-token context
        Assert.Equal(FinishReason.Length, generator.LastFinishReason);
        var e = Assert.Throws<ArgumentException>(() => generator.Generate(new int[64], new SamplingOptions()).ToList());
        Assert.Contains("context", e.Message);
    }

    [Fact]
    public void GenerationDoesNotLeakTensors()
    {
        using var model = Model(1, true);
        var generator = new TextGenerator(model, eosId: 49);
        var options = new SamplingOptions { Seed = 3, MaxTokens = 20, StopAtEos = false };
        _ = generator.Generate(new[] { 1, 2 }, options).ToList();
        long before = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++) _ = generator.Generate(new[] { 1, 2 }, options).ToList();
        Assert.Equal(before, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
