using Loom.Inference.Speculative;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Speculative;

/// <summary>Speculative decoding held to plain decoding (<see cref="TextGenerator"/>), and the cache rollback it relies on.</summary>
public class SpeculativeDecoderTests
{
    private const int Context = 48;

    // Untied embeddings: a random model with tied ones greedily repeats the last token, which would make n-gram
    // proposals trivially right.
    private static DecoderLm Target() => Seeded.Model(new DecoderLmOptions
    {
        VocabSize = 40, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64,
        MaxSequenceLength = Context, SharedEmbeddings = false,
    }, 11);

    private static DecoderLm OtherDraft() => Seeded.Model(new DecoderLmOptions
    {
        VocabSize = 40, ModelDim = 16, NumLayers = 1, NumHeads = 2, NumKvHeads = 1, HeadDim = 8, MlpDim = 32,
        MaxSequenceLength = Context, SharedEmbeddings = false,
    }, 5);

    /// <summary>50 prompts of 1..46 tokens: the longest run into the context's end.</summary>
    private static List<int[]> Prompts()
    {
        var random = new Random(3);
        return [.. Enumerable.Range(0, 50).Select(i => Enumerable.Range(0, i < 5 ? Context - 2 - i : random.Next(1, 30)).Select(_ => random.Next(0, 40)).ToArray())];
    }

    [Theory]
    [InlineData("ngram", 3)]
    [InlineData("self", 4)]  // the target as its own draft: every draft is accepted, so every round ends with the bonus token
    [InlineData("other", 2)] // a different random model: most drafts are rejected
    [InlineData("other", 8)]
    public void GreedyOutputIsTokenIdenticalToPlainDecoding(string proposer, int k)
    {
        using var target = Target();
        using var other = OtherDraft();
        var options = new SpeculativeOptions
        {
            DraftTokens = k,
            Draft = proposer switch { "self" => target, "other" => other, _ => null },
        };
        var prompts = Prompts();
        var plain = new TextGenerator(target, eosId: 0);
        var noEos = new SamplingOptions { Temperature = 0, MaxTokens = 30, StopAtEos = false };
        // End-of-sequence: the token plain greedy decoding emits most often, so that many outputs stop at it.
        int eos = prompts.SelectMany(p => plain.Generate(p, noEos)).GroupBy(t => t).OrderByDescending(g => g.Count()).First().Key;
        plain = new TextGenerator(target, eos);
        var speculative = new SpeculativeGenerator(target, eos, options);
        var sampling = noEos with { StopAtEos = true };
        var finishes = new List<FinishReason>();
        long proposed = 0, accepted = 0;
        foreach (var prompt in prompts)
        {
            var expected = plain.Generate(prompt, sampling).ToList();
            var actual = speculative.Generate(prompt, sampling).ToList();
            Assert.Equal(expected, actual);
            Assert.Equal(plain.LastFinishReason, speculative.LastFinishReason);
            finishes.Add(speculative.LastFinishReason);
            proposed += speculative.LastProposedTokens;
            accepted += speculative.LastAcceptedTokens;
        }
        Assert.Contains(FinishReason.Stop, finishes);
        Assert.Contains(FinishReason.Length, finishes);
        Assert.True(accepted > 0, "no draft token was ever accepted: the test would not exercise speculation");
        if (proposer == "self") Assert.Equal(proposed, accepted);
        if (proposer == "other") Assert.True(accepted < proposed, "a different model's drafts were all accepted: the test would not exercise rejection");
    }

    [Fact]
    public void AtTheContextEndTheLastRoundsDraftFewerTokens()
    {
        using var target = Target();
        var speculative = new SpeculativeGenerator(target, eosId: 0, new SpeculativeOptions { Draft = target, DraftTokens = 8 });
        var tokens = speculative.Generate(Enumerable.Repeat(7, Context - 5).ToArray(), new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false }).ToList();
        Assert.Equal(5, tokens.Count); // 43 + 5 = the 48-token context
        Assert.Equal(FinishReason.Length, speculative.LastFinishReason);
        Assert.Equal(5, speculative.LastProposedTokens); // k shrinks from 8 to the 5 positions left (42..47 hold the last prompt token and 5 drafts)
        Assert.Equal(new TextGenerator(target, 0).Generate(Enumerable.Repeat(7, Context - 5).ToArray(), new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false }), tokens);
    }

    [Fact]
    public void EachRoundRollsTheTargetsCacheBackToTheAcceptedTokens()
    {
        using var target = Target();
        using var other = OtherDraft();
        using var proposer = new DraftModelProposer(other, Context);
        using var decoder = new SpeculativeDecoder(target, proposer, 4, new SamplingOptions { Temperature = 0 }, Context);
        decoder.Start([1, 2, 3, 4, 5]);
        Assert.Equal(4, decoder.CachedLength);
        while (decoder.Sequence.Count < 40)
        {
            int before = decoder.Sequence.Count;
            var tokens = decoder.Step();
            Assert.InRange(tokens.Count, 1, 5);
            Assert.Equal(before + tokens.Count, decoder.Sequence.Count);
            Assert.Equal(decoder.Sequence.Count - 1, decoder.CachedLength); // every token but the newest, whatever was rejected
        }
        Assert.True(decoder.AcceptedTokens < decoder.ProposedTokens);
    }

    [Fact]
    public void ATruncatedCacheContinuesAsIfTheDroppedTokensNeverRan()
    {
        using var model = Target();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var rolledBack = KvCache.For(model, 1, Context);
        rolledBack.Run(model, tensor(new long[] { 1, 2, 3, 4, 5 }).unsqueeze(0));
        rolledBack.Truncate(3);
        Assert.Equal(3, rolledBack.Length);
        var afterRollback = rolledBack.Run(model, tensor(new long[] { 9, 8 }).unsqueeze(0)); // (1, 2, V)
        using var fresh = KvCache.For(model, 1, Context);
        var expected = fresh.Run(model, tensor(new long[] { 1, 2, 3, 9, 8 }).unsqueeze(0)).narrow(1, 3, 2); // (1, 2, V)
        Assert.True(afterRollback.allclose(expected, rtol: 1e-4, atol: 1e-5));
        Assert.Throws<ArgumentOutOfRangeException>(() => rolledBack.Truncate(6));
        Assert.Throws<ArgumentOutOfRangeException>(() => rolledBack.Truncate(-1));
    }

    [Fact]
    public void TheDraftProposerRollsBackToWhereTheSequenceDiverged()
    {
        using var draft = OtherDraft();
        using var generator = Seeded.Generator(1);
        var greedy = new SamplingOptions { Temperature = 0 };
        using var reused = new DraftModelProposer(draft, Context);
        using var scope = NewDisposeScope();
        _ = reused.Propose([1, 2, 3, 4, 5, 6], 4, greedy, generator, 40);
        Assert.Equal(9, reused.CachedLength); // the six tokens and the first three of the four drafts
        var afterDivergence = reused.Propose([1, 2, 3, 9, 9], 4, greedy, generator, 40);
        using var fresh = new DraftModelProposer(draft, Context);
        Assert.Equal(fresh.Propose([1, 2, 3, 9, 9], 4, greedy, generator, 40).Tokens, afterDivergence.Tokens);
    }

    [Fact]
    public void NGramLookupProposesWhatFollowedTheLatestEarlierOccurrence()
    {
        var ngram = new NGramProposer(maxN: 3);
        Assert.Equal([9, 1, 2], ngram.Lookup([1, 2, 3, 9, 1, 2, 3], 3));     // "1 2 3" occurred at 0, followed by 9 1 2
        Assert.Equal([8, 5], ngram.Lookup([5, 6, 5, 7, 5, 8, 5], 2));        // only "5" matches; its latest earlier occurrence is followed by 8 5
        Assert.Empty(ngram.Lookup([1, 2, 3, 4], 3));
        Assert.Equal([4], ngram.Lookup([4, 4], 3));                           // the follow may overlap the suffix itself
    }

    [Fact]
    public void SampledSpeculativeOutputFollowsTheTargetsDistribution()
    {
        // Two tokens from a vocabulary of 8, under temperature and top-k applied to both models: the joint frequency of
        // the 64 pairs over many seeds must match the target's exact p(a) · p(b | a).
        const int runs = 1500;
        var options = new DecoderLmOptions
        {
            VocabSize = 8, ModelDim = 16, NumLayers = 1, NumHeads = 2, NumKvHeads = 1, HeadDim = 8, MlpDim = 32, MaxSequenceLength = 16, SharedEmbeddings = false,
        };
        using var target = Seeded.Model(options, 21);
        using var draft = Seeded.Model(options with { ModelDim = 8, NumHeads = 1 }, 22);
        var sampling = new SamplingOptions { Temperature = 1.5, TopK = 6, MaxTokens = 2, StopAtEos = false };
        int[] prompt = [1, 2, 3];
        var exact = ExactPairs(target, prompt, sampling);
        var speculative = new SpeculativeGenerator(target, eosId: 0, new SpeculativeOptions { Draft = draft, DraftTokens = 2 });
        var counts = new long[64];
        long proposed = 0, accepted = 0;
        for (int seed = 0; seed < runs; seed++)
        {
            var tokens = speculative.Generate(prompt, sampling with { Seed = seed }).ToList();
            counts[tokens[0] * 8 + tokens[1]]++;
            proposed += speculative.LastProposedTokens;
            accepted += speculative.LastAcceptedTokens;
        }
        var (statistic, df) = ChiSquare.Statistic(counts, exact);
        Assert.True(statistic < ChiSquare.Critical(df), $"chi-square {statistic:F1} with {df} degrees of freedom exceeds {ChiSquare.Critical(df):F1}");
        Assert.InRange(accepted, 1, proposed - 1); // both acceptance and rejection happened
    }

    /// <summary>The target's exact probability of each pair (a, b) of next tokens, a·8 + b.</summary>
    private static double[] ExactPairs(LanguageModel model, int[] prompt, SamplingOptions sampling)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        var rows = tensor(Enumerable.Range(0, 8).Select(a => prompt.Append(a).Select(t => (long)t).ToArray()).SelectMany(r => r).ToArray()).view(8, -1); // (8, T+1)
        var logits = model.Forward(rows, null);                                                                       // (8, T+1, V)
        var first = Sampler.Probabilities(logits[0, -2].unsqueeze(0), sampling)[0].data<float>().ToArray();           // p(a)
        var second = Sampler.Probabilities(logits[.., -1], sampling);                                                 // (8, V) p(b | a)
        return [.. Enumerable.Range(0, 64).Select(i => (double)first[i / 8] * second[i / 8, i % 8].item<float>())];
    }
}
