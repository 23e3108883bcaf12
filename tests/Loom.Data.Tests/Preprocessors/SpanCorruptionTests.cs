using Loom.Data.Preprocessors;

namespace Loom.Data.Tests.Preprocessors;

public class SpanCorruptionTests
{
    private static readonly SpanCorruptionOptions T5 = new();

    // Sentinels are negative so they can never be confused with a token.
    private static int Sentinel(int k) => -1 - k;

    private static List<(int Start, int Length)> Spans(bool[] mask)
    {
        var spans = new List<(int, int)>();
        for (int i = 0; i < mask.Length; i++)
        {
            if (!mask[i]) continue;
            int s = i;
            while (i + 1 < mask.Length && mask[i + 1]) i++;
            spans.Add((s, i - s + 1));
        }
        return spans;
    }

    [Theory]
    // (length, T5's noise tokens = round_half_even(len * 0.15) clamped to [1, len-1], spans = round(noise / 3) >= 1)
    [InlineData(2, 1, 1)]
    [InlineData(10, 2, 1)]   // 1.5 rounds to even: 2
    [InlineData(30, 4, 1)]   // 4.5 -> 4, 4/3 -> 1
    [InlineData(100, 15, 5)]
    [InlineData(114, 17, 6)] // 17.1 -> 17, 5.67 -> 6
    [InlineData(512, 77, 26)]
    public void MaskHasT5sNoiseCountAndSpanCountStartingWithKeptTokens(int length, int noise, int spans)
    {
        for (long index = 0; index < 20; index++)
        {
            bool[] mask = SpanCorruption.RandomSpansNoiseMask(length, T5, 42, index);
            Assert.Equal(length, mask.Length);
            Assert.Equal(noise, mask.Count(b => b));
            Assert.Equal(spans, Spans(mask).Count);
            Assert.False(mask[0]);
            Assert.True(mask[^1]); // T5's mask always ends with a noise span
        }
    }

    [Fact]
    public void RealizedDensityAndMeanSpanLengthMatchTheOptionsOverManyExamples()
    {
        var rng = new Random(5);
        long noise = 0, total = 0, spans = 0;
        for (long index = 0; index < 2000; index++)
        {
            bool[] mask = SpanCorruption.RandomSpansNoiseMask(rng.Next(50, 600), T5, 9, index);
            noise += mask.Count(b => b);
            total += mask.Length;
            spans += Spans(mask).Count;
        }
        Assert.InRange(noise / (double)total, 0.145, 0.155);
        Assert.InRange(noise / (double)spans, 2.9, 3.1);
    }

    [Fact]
    public void SpanLengthsFollowAUniformRandomSegmentation()
    {
        // 100 tokens: 15 noise tokens in 5 spans. Under T5's uniform segmentation (a random choice of
        // 4 of the 14 gaps), P(first span has length 1) = C(13,3) / C(14,4) = 286 / 1001.
        int ones = 0, n = 4000;
        var firstKept = new HashSet<int>();
        for (long index = 0; index < n; index++)
        {
            var spans = Spans(SpanCorruption.RandomSpansNoiseMask(100, T5, 3, index));
            if (spans[0].Length == 1) ones++;
            firstKept.Add(spans[0].Start);
        }
        Assert.InRange(ones / (double)n, 286.0 / 1001 - 0.03, 286.0 / 1001 + 0.03);
        Assert.True(firstKept.Count > 20, $"the first kept run took only {firstKept.Count} lengths");
    }

    [Fact]
    public void MaskIsAPureFunctionOfSeedAndIndex()
    {
        bool[] a = SpanCorruption.RandomSpansNoiseMask(300, T5, 1, 17);
        Assert.Equal(a, SpanCorruption.RandomSpansNoiseMask(300, T5, 1, 17));
        Assert.NotEqual(a, SpanCorruption.RandomSpansNoiseMask(300, T5, 1, 18));
        Assert.NotEqual(a, SpanCorruption.RandomSpansNoiseMask(300, T5, 2, 17));
    }

    [Fact]
    public void InputsAndTargetsReconstructTheOriginalWithOrderedSentinels()
    {
        var rng = new Random(11);
        var options = new SpanCorruptionOptions { NoiseDensity = 0.3, MeanNoiseSpanLength = 2 };
        foreach (var opts in new[] { T5, options })
        {
            for (long index = 0; index < 300; index++)
            {
                int[] tokens = Enumerable.Range(0, rng.Next(0, 200)).Select(_ => rng.Next(1000)).ToArray();
                (int[] inputs, int[] targets) = SpanCorruption.Apply(tokens, opts, 77, index, Sentinel);

                // Sentinels appear as 0, 1, 2, ... in both, and targets start with one (for non-empty input).
                int[] inS = inputs.Where(t => t < 0).ToArray(), tgS = targets.Where(t => t < 0).ToArray();
                Assert.Equal(Enumerable.Range(0, inS.Length).Select(Sentinel), inS);
                Assert.Equal(Enumerable.Range(0, tgS.Length).Select(Sentinel), tgS);
                if (tokens.Length > 0) Assert.Equal(Sentinel(0), targets[0]);

                var spans = new Dictionary<int, List<int>>();
                int current = 0;
                foreach (int t in targets)
                {
                    if (t < 0) spans[current = t] = [];
                    else spans[current].Add(t);
                }
                var rebuilt = new List<int>();
                foreach (int t in inputs)
                {
                    if (t < 0) rebuilt.AddRange(spans[t]);
                    else rebuilt.Add(t);
                }
                Assert.Equal(tokens, rebuilt);
                Assert.All(spans.Where(s => inS.Contains(s.Key)), s => Assert.NotEmpty(s.Value));
            }
        }
    }

    [Fact]
    public void ShortInputsFollowT5()
    {
        (int[] i0, int[] t0) = SpanCorruption.Apply([], T5, 1, 0, Sentinel);
        Assert.Empty(i0);
        Assert.Empty(t0);
        // One token: T5 computes the mask for length 2 ([kept, noise]) and truncates it, so nothing is
        // noise and the target is the lone sentinel that replaces the kept run.
        (int[] i1, int[] t1) = SpanCorruption.Apply([5], T5, 1, 0, Sentinel);
        Assert.Equal([5], i1);
        Assert.Equal([Sentinel(0)], t1);
        (int[] i2, int[] t2) = SpanCorruption.Apply([5, 6], T5, 1, 0, Sentinel);
        Assert.Equal([5, Sentinel(0)], i2);
        Assert.Equal([Sentinel(0), 6], t2);
    }

    [Fact]
    public void HighDensityCapsSpansAtTheKeptTokens()
    {
        var dense = new SpanCorruptionOptions { NoiseDensity = 0.9, MeanNoiseSpanLength = 1 };
        bool[] mask = SpanCorruption.RandomSpansNoiseMask(20, dense, 1, 0);
        Assert.Equal(18, mask.Count(b => b));
        Assert.Equal(2, Spans(mask).Count);
    }

    [Fact]
    public void WorksWithExtraIdsVocabularySentinels()
    {
        var v = new ByteVocabulary().WithExtraIds(100);
        int[] tokens = v.Encode("The quick brown fox jumps over the lazy dog, and then again and again.");
        (int[] inputs, int[] targets) = SpanCorruption.Apply(tokens, T5, 0, 0, v.SentinelId);
        Assert.Equal(v.SentinelId(0), targets[0]);
        Assert.Equal(v.Size - 1, targets[0]);
        Assert.Contains("<extra_id_0>", v.Decode(inputs));
    }

    [Theory]
    [InlineData(0.0, 3.0, "NoiseDensity")]
    [InlineData(1.0, 3.0, "NoiseDensity")]
    [InlineData(double.NaN, 3.0, "NoiseDensity")]
    [InlineData(0.15, 0.5, "MeanNoiseSpanLength")]
    [InlineData(0.15, double.PositiveInfinity, "MeanNoiseSpanLength")]
    public void OptionsOutOfRangeAreRefusedNamingTheField(double density, double mean, string field)
    {
        var e = Assert.Throws<ArgumentException>(() => new SpanCorruptionOptions { NoiseDensity = density, MeanNoiseSpanLength = mean });
        Assert.Equal(field, e.ParamName);
    }
}
