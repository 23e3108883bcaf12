using Loom.Data;
using Loom.Inference.Engine;
using Loom.Inference.Speculative;
using Loom.Models;

namespace Loom.Inference.Tests.Speculative;

/// <summary>The sequential engine decoding speculatively gives the same greedy output and counts what it proposed.</summary>
public class SpeculativeEngineTests
{
    private static DecoderLm Model(int layers, int dim, long seed) => Seeded.Model(new DecoderLmOptions
    {
        VocabSize = 258, ModelDim = dim, NumLayers = layers, NumHeads = 2, NumKvHeads = 1, HeadDim = 8, MlpDim = 2 * dim,
        MaxSequenceLength = 64, SharedEmbeddings = false,
    }, seed);

    private static async Task<(List<int> Tokens, FinishReason? Finish)> Run(IGenerationEngine engine, GenerationRequest request)
    {
        var tokens = new List<int>();
        FinishReason? finish = null;
        await foreach (var update in engine.GenerateAsync(request))
        {
            tokens.AddRange(update.Tokens);
            finish = update.FinishReason ?? finish;
        }
        return (tokens, finish);
    }

    [Theory]
    [InlineData("ngram")]
    [InlineData("other")] // a different random model: its drafts are almost all rejected
    [InlineData("self")]  // the target as its own draft: all accepted
    public async Task GreedyRequestsGetThePlainEnginesTokensAndTheCountersMove(string proposer)
    {
        var vocabulary = new ByteVocabulary();
        using var target = Model(2, 32, 3);
        using var other = Model(1, 16, 4);
        using var plain = new SequentialEngine(target, vocabulary, "plain");
        var options = new SpeculativeOptions { Draft = proposer switch { "self" => target, "other" => other, _ => null }, DraftTokens = 3 };
        using var speculative = new SequentialEngine(target, vocabulary, "spec", speculative: options);
        foreach (string prompt in new[] { "abcabcabc", "Hello, hello, hello", "x" })
            foreach (var sampling in new[]
                     {
                         new SamplingOptions { Temperature = 0, MaxTokens = 40, StopAtEos = false },
                         new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false, Stop = ["e"] },
                     })
            {
                var request = new GenerationRequest(vocabulary.Encode(prompt), sampling);
                var expected = await Run(plain, request);
                var actual = await Run(speculative, request);
                Assert.Equal(expected.Tokens, actual.Tokens);
                Assert.Equal(expected.Finish, actual.Finish);
            }
        var stats = speculative.Stats;
        Assert.True(stats.Speculative);
        Assert.True(stats.SpeculativeProposedTokens > 0);
        Assert.InRange(stats.SpeculativeAcceptedTokens, proposer == "self" ? stats.SpeculativeProposedTokens : 0, stats.SpeculativeProposedTokens);
        Assert.Equal(plain.Stats.GeneratedTokensTotal, stats.GeneratedTokensTotal);
        Assert.False(plain.Stats.Speculative);
    }

    [Fact]
    public async Task RequestsWithPenaltiesOrLogProbsDecodeTokenByToken()
    {
        var vocabulary = new ByteVocabulary();
        using var target = Model(2, 32, 3);
        using var plain = new SequentialEngine(target, vocabulary, "plain");
        using var speculative = new SequentialEngine(target, vocabulary, "spec", speculative: new SpeculativeOptions());
        var request = new GenerationRequest(vocabulary.Encode("abcabc"), new SamplingOptions { Seed = 4, MaxTokens = 20, StopAtEos = false, FrequencyPenalty = 1, LogProbs = 1 });
        Assert.Equal((await Run(plain, request)).Tokens, (await Run(speculative, request)).Tokens);
        Assert.Equal(0, speculative.Stats.SpeculativeProposedTokens);
    }

    [Fact]
    public void ADraftWithASmallerVocabularyIsRefused()
    {
        using var target = Model(2, 32, 3);
        using var draft = Seeded.Model(TinyModels.Decoder(), 1); // 40 ids against 258
        var e = Assert.Throws<ArgumentException>(() => new SequentialEngine(target, new ByteVocabulary(), "spec", speculative: new SpeculativeOptions { Draft = draft }));
        Assert.Contains("vocabulary", e.Message);
    }
}
