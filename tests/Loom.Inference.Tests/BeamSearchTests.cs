using Loom.Inference;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests;

public class BeamSearchTests
{
    private static DecoderLm Model(int vocab)
    {
        using var generator = new Generator(23);
        return new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocab, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 32,
        }, generator: generator);
    }

    [Theory]
    [InlineData(1, 0.0)]
    [InlineData(3, 0.0)]
    [InlineData(5, 1.0)]
    public void CachedBeamSearchEqualsRecomputingEveryPrefix(int beams, double lengthPenalty)
    {
        using var model = Model(50);
        var search = new BeamSearch(model, eosId: 49);
        var options = new BeamSearchOptions { Beams = beams, MaxTokens = 12, LengthPenalty = lengthPenalty };
        int[] prompt = [3, 14, 15, 9, 26];
        var cached = search.Search(prompt, options);
        var reference = search.SearchWithoutCache(prompt, options);
        Assert.Equal(reference.Count, cached.Count);
        for (int i = 0; i < cached.Count; i++)
        {
            Assert.Equal(reference[i].Tokens, cached[i].Tokens);
            Assert.Equal(reference[i].LogProb, cached[i].LogProb, 4);
        }
    }

    [Fact]
    public void OneBeamIsGreedyDecoding()
    {
        using var model = Model(50);
        int[] prompt = [7, 7, 1];
        var best = new BeamSearch(model, eosId: 49).Search(prompt, new BeamSearchOptions { Beams = 1, MaxTokens = 10 })[0];
        var greedy = new TextGenerator(model, eosId: 49).GenerateWithoutCache(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 10 }).ToList();
        Assert.Equal(greedy, best.Tokens);
    }

    [Fact]
    public void WideEnoughBeamFindsTheMostLikelySequenceFoundByExhaustiveSearch()
    {
        const int vocab = 8, eos = 7, length = 3;
        using var model = Model(vocab);
        int[] prompt = [1, 2];
        var best = new BeamSearch(model, eos).Search(prompt, new BeamSearchOptions { Beams = 64, MaxTokens = length })[0];

        // Every sequence of up to 3 tokens, ended by EOS or by the limit, scored by the model.
        double bestLogProb = double.NegativeInfinity;
        List<int> bestTokens = [];
        void Visit(List<int> tokens, double logProb)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var input = tensor(prompt.Concat(tokens).Select(t => (long)t).ToArray()).unsqueeze(0);
            var next = model.forward(input)[0, -1].log_softmax(-1).to(float64).data<double>().ToArray();
            for (int t = 0; t < vocab; t++)
            {
                double score = logProb + next[t];
                if (t == eos || tokens.Count + 1 == length)
                {
                    if (score > bestLogProb) (bestLogProb, bestTokens) = (score, t == eos ? [.. tokens] : [.. tokens, t]);
                }
                else Visit([.. tokens, t], score);
            }
        }
        Visit([], 0);
        Assert.Equal(bestTokens, best.Tokens);
        Assert.Equal(bestLogProb, best.LogProb, 4);
    }
}
