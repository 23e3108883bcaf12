using Loom.Data.Preprocessors;

namespace Loom.Data.Tests.Preprocessors;

public class TokenPreprocessorsTests
{
    [Fact]
    public void TruncateKeepsThePrefix()
    {
        Assert.Equal([1, 2], TokenPreprocessors.Truncate([1, 2, 3], 2));
        Assert.Equal([1, 2, 3], TokenPreprocessors.Truncate([1, 2, 3], 10));
        Assert.Empty(TokenPreprocessors.Truncate([1, 2, 3], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenPreprocessors.Truncate([1], -1));
    }

    [Fact]
    public void AppendEosAddsOneId()
    {
        Assert.Equal([1, 2, 9], TokenPreprocessors.AppendEos([1, 2], 9));
        Assert.Equal([9], TokenPreprocessors.AppendEos([], 9));
    }

    [Fact]
    public void AppendEosAfterTrimFitsTheLengthAndEndsWithEos()
    {
        Assert.Equal([1, 2, 9], TokenPreprocessors.AppendEosAfterTrim([1, 2, 3, 4], 9, 3));
        Assert.Equal([1, 9], TokenPreprocessors.AppendEosAfterTrim([1], 9, 3));
        Assert.Equal([9], TokenPreprocessors.AppendEosAfterTrim([1, 2], 9, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenPreprocessors.AppendEosAfterTrim([1], 9, 0));
    }

    [Fact]
    public void PrefixLmSplitIsUniformOverInteriorPointsAndLossless()
    {
        int[] tokens = [10, 11, 12, 13, 14];
        var counts = new int[tokens.Length + 1];
        const int n = 4000;
        for (long index = 0; index < n; index++)
        {
            (int[] inputs, int[] targets) = PrefixLmSplit.Apply(tokens, 3, index);
            Assert.Equal(tokens, inputs.Concat(targets));
            counts[inputs.Length]++;
        }
        Assert.Equal(0, counts[0]);
        Assert.Equal(0, counts[5]);
        for (int k = 1; k <= 4; k++) Assert.InRange(counts[k] / (double)n, 0.25 - 0.03, 0.25 + 0.03);
    }

    [Fact]
    public void PrefixLmSplitIsAPureFunctionOfSeedAndIndex()
    {
        int[] tokens = [.. Enumerable.Range(0, 1000)];
        int Split(ulong seed, long index) => PrefixLmSplit.Apply(tokens, seed, index).Inputs.Length;
        Assert.Equal(Split(1, 5), Split(1, 5));
        // Over 20 indices, a split that ignored the index or the seed would repeat; 999 points make
        // 20 equal draws essentially impossible otherwise.
        Assert.True(Enumerable.Range(0, 20).Select(i => Split(1, i)).Distinct().Count() > 1);
        Assert.True(Enumerable.Range(0, 20).Select(s => Split((ulong)s, 5)).Distinct().Count() > 1);
    }

    [Fact]
    public void PrefixLmSplitOfShortSequencesFollowsT5()
    {
        (int[] i0, int[] t0) = PrefixLmSplit.Apply([], 1, 0);
        Assert.Empty(i0);
        Assert.Empty(t0);
        (int[] i1, int[] t1) = PrefixLmSplit.Apply([7], 1, 0);
        Assert.Empty(i1);
        Assert.Equal([7], t1);
        (int[] i2, int[] t2) = PrefixLmSplit.Apply([7, 8], 1, 0);
        Assert.Equal([7], i2);
        Assert.Equal([8], t2);
    }
}
