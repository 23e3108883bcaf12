using Loom.Models.T5;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.T5;

public class RelativePositionBiasTests
{
    // Expected buckets from T5's published formula (mesh-tensorflow's _relative_position_bucket, as HF
    // transformers' T5Attention._relative_position_bucket has it), relative position = key − query:
    //   bidirectional: n = buckets/2, offset n for keys after the query, distance |r|; causal: n = buckets, distance max(−r, 0);
    //   exact below n/2, else min(n/2 + floor(log(distance/(n/2)) / log(max_distance/(n/2)) · (n − n/2)), n − 1).
    [Theory]
    // Encoder (bidirectional), T5's 32 buckets up to 128: 16 per direction, 8 exact.
    [InlineData(0, true, 32, 128, 0)]
    [InlineData(1, true, 32, 128, 17)]     // the key just after the query: upper half
    [InlineData(-1, true, 32, 128, 1)]
    [InlineData(7, true, 32, 128, 23)]     // last exact distance
    [InlineData(-7, true, 32, 128, 7)]
    [InlineData(8, true, 32, 128, 24)]     // first logarithmic bucket: log(1) = 0
    [InlineData(-8, true, 32, 128, 8)]
    [InlineData(12, true, 32, 128, 25)]    // 8 + floor(log 1.5 / log 16 · 8 = 1.17)
    [InlineData(-12, true, 32, 128, 9)]
    [InlineData(16, true, 32, 128, 26)]    // 8 + log 2 / log 16 · 8 = 10
    [InlineData(-16, true, 32, 128, 10)]
    [InlineData(-20, true, 32, 128, 10)]   // 8 + floor(2.64)
    [InlineData(33, true, 32, 128, 28)]    // 16 + 8 + floor(4.09)
    [InlineData(-64, true, 32, 128, 14)]   // 8 + 6
    [InlineData(100, true, 32, 128, 31)]   // 16 + 8 + floor(7.11)
    [InlineData(127, true, 32, 128, 31)]
    [InlineData(-128, true, 32, 128, 15)]  // max distance: the last bucket of its half
    [InlineData(500, true, 32, 128, 31)]   // beyond: clamped
    [InlineData(-100000, true, 32, 128, 15)]
    // Decoder (causal): later keys share bucket 0; 32 buckets for the past, 16 exact.
    [InlineData(0, false, 32, 128, 0)]
    [InlineData(5, false, 32, 128, 0)]
    [InlineData(1000, false, 32, 128, 0)]
    [InlineData(-1, false, 32, 128, 1)]
    [InlineData(-15, false, 32, 128, 15)]
    [InlineData(-16, false, 32, 128, 16)]
    [InlineData(-20, false, 32, 128, 17)]  // 16 + floor(log 1.25 / log 8 · 16 = 1.72)
    [InlineData(-32, false, 32, 128, 21)]  // 16 + floor(5.33)
    [InlineData(-40, false, 32, 128, 23)]
    [InlineData(-64, false, 32, 128, 26)]  // 16 + floor(10.67)
    [InlineData(-90, false, 32, 128, 29)]
    [InlineData(-127, false, 32, 128, 31)]
    [InlineData(-128, false, 32, 128, 31)]
    [InlineData(-3000, false, 32, 128, 31)]
    // Other sizes: 8 buckets up to 16, and the fewest that work, 4 up to 8.
    [InlineData(3, true, 8, 16, 6)]
    [InlineData(-3, true, 8, 16, 2)]
    [InlineData(5, true, 8, 16, 6)]
    [InlineData(-10, true, 8, 16, 3)]
    [InlineData(20, true, 8, 16, 7)]
    [InlineData(-2, false, 8, 16, 2)]
    [InlineData(-5, false, 8, 16, 4)]
    [InlineData(-9, false, 8, 16, 6)]
    [InlineData(-17, false, 8, 16, 7)]
    [InlineData(2, true, 4, 8, 3)]
    [InlineData(-1, true, 4, 8, 1)]
    [InlineData(-5, true, 4, 8, 1)]
    [InlineData(-100, true, 4, 8, 1)]
    public void BucketsFollowT5sFormula(long relative, bool bidirectional, int buckets, int maxDistance, long expected)
    {
        using var _ = NewDisposeScope();
        var bucket = RelativePositionBias.Bucket(tensor(new[] { relative }), bidirectional, buckets, maxDistance);
        Assert.Equal(expected, bucket[0].item<long>());
    }

    [Fact]
    public void BucketsOfATensorAreElementwiseAndInRange()
    {
        using var _ = NewDisposeScope();
        var relative = arange(-300, 301, dtype: int64).view(1, -1, 1).expand(2, -1, 3); // any shape
        foreach (bool bidirectional in new[] { true, false })
        {
            var buckets = RelativePositionBias.Bucket(relative, bidirectional, 32, 128);
            Assert.Equal(relative.shape, buckets.shape);
            Assert.True(buckets.ge(0).all().item<bool>() && buckets.lt(32).all().item<bool>());
            // Buckets never decrease with distance in either direction.
            var row = buckets[0, TensorIndex.Colon, 0];
            Assert.True(row.narrow(0, 300, 301).diff().ge(0).all().item<bool>());
            Assert.True(row.narrow(0, 0, 301).flip(0).diff().ge(0).all().item<bool>());
        }
    }

    [Fact]
    public void BiasLooksUpEachHeadsValueOfEachBucket()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(3);
        var bias = new RelativePositionBias(heads: 3, bidirectional: true, numBuckets: 8, maxDistance: 16, modelDim: 16, generator: generator);
        var queries = tensor(new long[] { 0, 1, 2, 9, 0 }).unsqueeze(0); // (1, T): packed positions restart at 0
        var keys = tensor(new long[] { 0, 1, 2, 9, 0, 4 }).unsqueeze(0);  // (1, S)
        var values = bias.forward(queries, keys);                         // (1, H, T, S)
        Assert.Equal([1L, 3, 5, 6], values.shape);
        var table = bias.parameters().Single();                           // (buckets, H)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 6; j++)
            {
                long bucket = RelativePositionBias.Bucket(tensor(new[] { keys[0, j].item<long>() - queries[0, i].item<long>() }), true, 8, 16)[0].item<long>();
                for (int h = 0; h < 3; h++)
                    Assert.Equal(table[bucket, h].item<float>(), values[0, h, i, j].item<float>());
            }
    }

    [Theory]
    [InlineData(true, 31, 128, "even")]
    [InlineData(true, 2, 128, "at least 2")]
    [InlineData(false, 1, 128, "at least 2")]
    [InlineData(true, 32, 8, "max distance")]
    [InlineData(false, 32, 16, "max distance")]
    public void BadBucketSettingsAreRefused(bool bidirectional, int buckets, int maxDistance, string message)
    {
        using var _ = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => RelativePositionBias.Bucket(zeros(3, dtype: int64), bidirectional, buckets, maxDistance));
        Assert.Contains(message, e.Message);
        Assert.Throws<ArgumentException>(() => new RelativePositionBias(2, bidirectional, buckets, maxDistance, 8));
    }
}
