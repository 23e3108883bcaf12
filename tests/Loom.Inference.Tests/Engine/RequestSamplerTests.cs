using Loom.Inference.Engine;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

public class RequestSamplerTests
{
    private static readonly PieceVocabulary Vocabulary = new(["a", "b", "c", "d", "e", "f"]); // EOS 6, PAD 7: 8 logits

    private static readonly float[] Logits = [0.1f, 2.0f, 1.5f, -1.0f, 0.0f, 0.5f, -3.0f, -3.0f];

    private static int[] Draw(SamplingOptions options, int count)
    {
        using var sampler = new RequestSampler(options, Vocabulary);
        using var logits = tensor(Logits);
        return [.. Enumerable.Range(0, count).Select(_ => sampler.Next(logits).Token)];
    }

    [Fact]
    public void IdsPastTheVocabularyAreNeverChosen()
    {
        // A model whose embedding is padded past the vocabulary's 8 ids, favouring padding id 10.
        using var sampler = new RequestSampler(new SamplingOptions { Temperature = 0, LogProbs = 3 }, Vocabulary);
        using var logits = tensor([.. Logits, 1f, 2f, 9f, 3f]); // (12)
        var (token, logProb) = sampler.Next(logits);
        Assert.Equal(1, token); // b, the best id the vocabulary has
        Assert.All(logProb!.Top, t => Assert.InRange(t.Token, 0, Vocabulary.Size - 1));
        using var sampling = new RequestSampler(new SamplingOptions { Temperature = 2, Seed = 3 }, Vocabulary);
        Assert.All(Enumerable.Range(0, 50), _ => Assert.InRange(sampling.Next(logits).Token, 0, Vocabulary.Size - 1));
    }

    [Fact]
    public void WithoutPenaltiesGreedyRepeatsTheArgmax() =>
        Assert.Equal([1, 1, 1], Draw(new SamplingOptions { Temperature = 0 }, 3));

    [Fact]
    public void AFrequencyPenaltyTurnsAwayFromARepeatedToken()
    {
        // b (2.0) is chosen, then pays 1.0 per use: 1.0 < c's 1.5, so c; then c pays 1.0: b 1.0 > c 0.5.
        Assert.Equal([1, 2, 1, 2], Draw(new SamplingOptions { Temperature = 0, FrequencyPenalty = 1.0 }, 4));
        // A penalty of 0.4 leaves b (1.6) ahead of c (1.5) once, but not twice (1.2).
        Assert.Equal([1, 1, 2], Draw(new SamplingOptions { Temperature = 0, FrequencyPenalty = 0.4 }, 3));
    }

    [Fact]
    public void APresencePenaltyIsPaidOncePerToken()
    {
        // b pays 0.8 once (1.2 < 1.5), c pays 0.8 once (0.7 < 1.2): b again, and both stay at their once-paid logits.
        Assert.Equal([1, 2, 1, 1], Draw(new SamplingOptions { Temperature = 0, PresencePenalty = 0.8 }, 4));
    }

    [Fact]
    public void ANegativePenaltyEncouragesRepetition()
    {
        var logits = new[] { 1.0f, 1.2f, 0f, 0f, 0f, 0f, 0f, 0f };
        using var sampler = new RequestSampler(new SamplingOptions { Temperature = 0, FrequencyPenalty = -1 }, Vocabulary);
        using var tensorLogits = tensor(logits);
        Assert.Equal([1, 1, 1], Enumerable.Range(0, 3).Select(_ => sampler.Next(tensorLogits).Token));
        Assert.Equal(logits, tensorLogits.data<float>().ToArray()); // the caller's logits are not changed
    }

    [Fact]
    public void LogProbsAreLogSoftmaxValuesWithSortedAlternatives()
    {
        using var sampler = new RequestSampler(new SamplingOptions { Temperature = 0, LogProbs = 3 }, Vocabulary);
        using var logits = tensor(Logits);
        var (token, logProb) = sampler.Next(logits);

        double logSumExp = Math.Log(Logits.Sum(l => Math.Exp(l)));
        Assert.Equal(1, token);
        Assert.NotNull(logProb);
        Assert.Equal(1, logProb.Token);
        Assert.Equal("b", logProb.Text);
        Assert.Equal(Logits[1] - logSumExp, logProb.LogProb, 5);
        Assert.Equal([1, 2, 5], logProb.Top.Select(t => t.Token));
        Assert.Equal(["b", "c", "f"], logProb.Top.Select(t => t.Text));
        foreach (var alternative in logProb.Top)
            Assert.Equal(Logits[alternative.Token] - logSumExp, alternative.LogProb, 5);
        Assert.True(logProb.Top.Zip(logProb.Top.Skip(1)).All(p => p.First.LogProb >= p.Second.LogProb));
    }

    [Fact]
    public void LogProbsFollowThePenalizedDistributionAndZeroAlternativesGivesNone()
    {
        using var sampler = new RequestSampler(new SamplingOptions { Temperature = 0, FrequencyPenalty = 1.0, LogProbs = 0 }, Vocabulary);
        using var logits = tensor(Logits);
        _ = sampler.Next(logits);
        var (token, logProb) = sampler.Next(logits);

        var penalized = Logits.ToArray();
        penalized[1] -= 1.0f;
        double logSumExp = Math.Log(penalized.Sum(l => Math.Exp(l)));
        Assert.Equal(2, token);
        Assert.Equal(penalized[2] - logSumExp, logProb!.LogProb, 5);
        Assert.Empty(logProb.Top);
        using var plain = new RequestSampler(new SamplingOptions(), Vocabulary);
        Assert.Null(plain.Next(logits).LogProb);
    }

    [Fact]
    public void ASeedMakesSamplingReproducible()
    {
        var options = new SamplingOptions { Temperature = 1, Seed = 3 };
        var first = Draw(options, 40);
        Assert.Equal(first, Draw(options, 40));
        Assert.NotEqual(first, Draw(options with { Seed = 4 }, 40));
        Assert.True(first.Distinct().Count() > 1);
    }
}
