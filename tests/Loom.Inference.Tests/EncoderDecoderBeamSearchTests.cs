using Loom.Models;
using Loom.Models.T5;
using static TorchSharp.torch;

namespace Loom.Inference.Tests;

/// <summary>Beam search on a T5 encoder-decoder: the prompt is encoded once and the beams share its memory.</summary>
public class EncoderDecoderBeamSearchTests
{
    private const int StartId = 0; // the decoder's start token (seqio: the pad id)

    private static T5Model Model(int vocab) => Seeded.Model(TinyModels.T5(vocab, 32), 31);

    [Theory]
    [InlineData(1, 0.0)]
    [InlineData(3, 0.0)]
    [InlineData(5, 1.0)]
    public void CachedBeamSearchEqualsRecomputingEveryPrefix(int beams, double lengthPenalty)
    {
        using var model = Model(50);
        var search = new BeamSearch(model, eosId: 49, StartId);
        var options = new BeamSearchOptions { Beams = beams, MaxTokens = 12, LengthPenalty = lengthPenalty };
        int[] prompt = [3, 14, 15, 9, 26, 5, 35];
        var cached = search.Search(prompt, options);
        var reference = search.SearchWithoutCache(prompt, options);
        Assert.Equal(reference.Count, cached.Count);
        for (int i = 0; i < cached.Count; i++)
        {
            Assert.Equal(reference[i].Tokens, cached[i].Tokens);
            Assert.Equal(reference[i].LogProb, cached[i].LogProb, 4);
            Assert.Equal(reference[i].FinishReason, cached[i].FinishReason);
        }
    }

    [Fact]
    public void OneBeamIsGreedyDecoding()
    {
        using var model = Model(50);
        int[] prompt = [7, 7, 1, 30];
        var best = new BeamSearch(model, eosId: 49, StartId).Search(prompt, new BeamSearchOptions { Beams = 1, MaxTokens = 10 })[0];
        var greedy = new TextGenerator(model, eosId: 49, StartId).GenerateWithoutCache(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 10 }).ToList();
        Assert.Equal(greedy, best.Tokens);
    }

    [Fact]
    public void WideEnoughBeamFindsTheMostLikelySequenceFoundByExhaustiveSearch()
    {
        const int vocab = 8, eos = 7, length = 3;
        using var model = Model(vocab);
        int[] prompt = [1, 2, 3, 4, 5];
        // 64 beams hold all 7² live prefixes of length 2, so the search is exhaustive up to 3 tokens.
        var best = new BeamSearch(model, eos, StartId).Search(prompt, new BeamSearchOptions { Beams = 64, MaxTokens = length })[0];

        // Every sequence of up to 3 tokens, ended by EOS or by the limit, scored by the model without a cache.
        double bestLogProb = double.NegativeInfinity;
        List<int> bestTokens = [];
        var scores = new List<double>();
        void Visit(List<int> tokens, double logProb)
        {
            double[] next;
            using (var scope = NewDisposeScope())
            using (no_grad())
                next = ReferenceDecoder.LastLogits(model, prompt, tokens, StartId).log_softmax(-1).to(float64).data<double>().ToArray();
            for (int t = 0; t < vocab; t++)
            {
                double score = logProb + next[t];
                if (t == eos || tokens.Count + 1 == length)
                {
                    scores.Add(score);
                    if (score > bestLogProb) (bestLogProb, bestTokens) = (score, t == eos ? [.. tokens] : [.. tokens, t]);
                }
                else Visit([.. tokens, t], score);
            }
        }
        Visit([], 0);
        Assert.Equal(1 + 7 + 49 + 343, scores.Count); // every ending: EOS after 0, 1 or 2 tokens, or 3 tokens
        Assert.Equal(1.0, scores.Sum(Math.Exp), 4);   // they partition the probability mass
        Assert.Equal(bestTokens, best.Tokens);
        Assert.Equal(bestLogProb, best.LogProb, 4);
    }

    [Fact]
    public void TheEncoderInputChangesTheBestBeam()
    {
        using var model = Model(50);
        var search = new BeamSearch(model, eosId: 49, StartId);
        var options = new BeamSearchOptions { Beams = 4, MaxTokens = 8 };
        var a = search.Search([3, 14, 15, 9], options)[0];
        var b = search.Search([27, 18, 28, 18, 28, 45], options)[0];
        Assert.True(!a.Tokens.SequenceEqual(b.Tokens) || Math.Abs(a.LogProb - b.LogProb) > 1e-3, "two prompts gave the same best beam and score: the encoder memory made no difference");
    }
}
