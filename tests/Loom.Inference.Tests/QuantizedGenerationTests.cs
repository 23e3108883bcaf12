using Loom.Inference;
using Loom.Models;
using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Inference.Tests;

public class QuantizedGenerationTests
{
    private static DecoderLm Model(bool sharedEmbeddings)
    {
        using var generator = new Generator(21);
        return new DecoderLm(new DecoderLmOptions
        {
            VocabSize = 50, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64,
            MaxSequenceLength = 64, SharedEmbeddings = sharedEmbeddings,
        }, generator: generator);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CachedGenerationEqualsRecomputingThePrefixForAnInt8Model(bool sharedEmbeddings)
    {
        using var model = Model(sharedEmbeddings);
        model.Quantize(QuantizationMode.Int8);
        var generator = new TextGenerator(model, eosId: 49);
        int[] prompt = { 3, 14, 15, 9, 26, 5 };
        foreach (var options in new[]
                 {
                     new SamplingOptions { Temperature = 0, MaxTokens = 30, StopAtEos = false },
                     new SamplingOptions { Temperature = 1.0, TopK = 20, Seed = 5, MaxTokens = 30, StopAtEos = false },
                 })
        {
            var cached = generator.Generate(prompt, options).ToList();
            Assert.Equal(30, cached.Count);
            Assert.Equal(generator.GenerateWithoutCache(prompt, options).ToList(), cached);
        }
    }

    [Fact]
    public void GreedyInt8GenerationMostlyMatchesTheFloatModel()
    {
        using var original = Model(sharedEmbeddings: true);
        using var quantized = Model(sharedEmbeddings: true);
        quantized.Quantize(QuantizationMode.Int8);
        int[] prompt = { 7, 1, 30, 22 };
        var greedy = new SamplingOptions { Temperature = 0, MaxTokens = 8, StopAtEos = false };
        var expected = new TextGenerator(original, eosId: 49).Generate(prompt, greedy).ToList();
        var actual = new TextGenerator(quantized, eosId: 49).Generate(prompt, greedy).ToList();
        int agreeing = expected.Zip(actual).Count(p => p.First == p.Second);
        Assert.True(agreeing >= 6, $"{agreeing} of 8 greedy tokens agree: [{string.Join(", ", expected)}] vs [{string.Join(", ", actual)}]");
    }
}
