using Loom.Models.Reformer;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Reformer;

public class LshAttentionTests
{
    private static (Tensor Qk, Tensor V) Inputs(long seed, int b = 2, int h = 2, int t = 16, int d = 8)
    {
        using var g = Seeded.Generator(seed);
        return (randn(new long[] { b, h, t, d }, generator: g), randn(new long[] { b, h, t, d }, generator: g));
    }

    private static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 1)]
    [InlineData(true, 3)]
    public void OneBucketAndOneChunkIsFullSharedQkAttention(bool causal, int rounds)
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(1);
        using var g = Seeded.Generator(7);
        using var lsh = new LshAttention(buckets: 1, rounds, chunkLength: 16, causal);
        var expected = SharedQkAttention.Full(qk, v, causal);
        Assert.True(MaxDiff(lsh.Forward(qk, v, g), expected) < 1e-5);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OneChunkIsFullAttentionWithinBuckets(bool causal)
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(2);
        using var g = Seeded.Generator(3);
        using var lsh = new LshAttention(buckets: 4, rounds: 1, chunkLength: 16, causal);
        var buckets = lsh.Hash(qk, lsh.Rotations(8, g)); // (B, H, 1, T)
        Assert.True(buckets.unique().output.shape[0] > 1); // the test means something only with several buckets
        var expected = SharedQkAttention.Full(qk, v, causal, buckets.squeeze(2));
        Assert.True(MaxDiff(lsh.Attend(qk, v, buckets), expected) < 1e-5);
    }

    [Fact]
    public void RoundsCombineByTheirLogSumExps()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(10);
        using var g = Seeded.Generator(4);
        using var lsh = new LshAttention(buckets: 4, rounds: 3, chunkLength: 16, causal: true);
        var buckets = lsh.Hash(qk, lsh.Rotations(8, g)); // (B, H, 3, T)
        // Each round by hand: full attention within that round's buckets, and the log-sum-exp of its scores.
        var positions = arange(16);
        var outputs = new List<Tensor>();
        var lses = new List<Tensor>();
        for (var r = 0; r < 3; r++)
        {
            var bucket = buckets.select(2, r); // (B, H, T)
            var scores = qk.matmul(SharedQkAttention.Keys(qk).transpose(-1, -2)) / Math.Sqrt(8);
            var hidden = positions.unsqueeze(0) > positions.unsqueeze(-1) | bucket.unsqueeze(-1).ne(bucket.unsqueeze(-2));
            scores = scores.masked_fill(hidden, SharedQkAttention.MaskedScore).masked_fill(eye(16).to_type(ScalarType.Bool), SharedQkAttention.SelfScore);
            outputs.Add(scores.softmax(-1).matmul(v));
            lses.Add(scores.logsumexp(-1));
        }
        var weights = stack(lses, 0).softmax(0).unsqueeze(-1);      // (3, B, H, T, 1)
        var expected = (stack(outputs, 0) * weights).sum(0L);       // (B, H, T, Dh); 0L: a bare 0 would bind to sum(ScalarType)
        Assert.True(MaxDiff(lsh.Attend(qk, v, buckets), expected) < 1e-5);
    }

    [Fact]
    public void FirstCausalTokenAttendsToItself()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(3);
        using var g = Seeded.Generator(3);
        using var lsh = new LshAttention(buckets: 4, rounds: 2, chunkLength: 4, causal: true);
        var output = lsh.Forward(qk, v, g);
        Assert.True(MaxDiff(output[.., .., 0], v[.., .., 0]) < 1e-5);
        Assert.False(output.isnan().any().item<bool>());
    }

    [Fact]
    public void LaterValuesNeverReachEarlierOutputs()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(4);
        using var lsh = new LshAttention(buckets: 4, rounds: 2, chunkLength: 4, causal: true);
        var changed = v.clone();
        changed[.., .., 10..] = randn_like(changed[.., .., 10..]);
        using var g1 = Seeded.Generator(5);
        using var g2 = Seeded.Generator(5);
        var before = lsh.Forward(qk, v, g1);
        var after = lsh.Forward(qk, changed, g2);
        Assert.True(MaxDiff(before[.., .., ..10], after[.., .., ..10]) == 0);
        Assert.True(MaxDiff(before[.., .., 10..], after[.., .., 10..]) > 1e-3);
    }

    [Fact]
    public void WithOneChunkLaterTokensNeverChangeEarlierOutputs()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(5);
        using var lsh = new LshAttention(buckets: 4, rounds: 2, chunkLength: 16, causal: true);
        var (qk2, v2) = (qk.clone(), v.clone());
        qk2[.., .., 12..] = randn_like(qk2[.., .., 12..]);
        v2[.., .., 12..] = randn_like(v2[.., .., 12..]);
        using var g1 = Seeded.Generator(5);
        using var g2 = Seeded.Generator(5);
        var before = lsh.Forward(qk, v, g1);
        var after = lsh.Forward(qk2, v2, g2);
        Assert.True(MaxDiff(before[.., .., ..12], after[.., .., ..12]) < 1e-6);
    }

    [Fact]
    public void GradientsOfEarlierOutputsIgnoreLaterPositions()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(6);
        qk.requires_grad_(true);
        v.requires_grad_(true);
        using var g = Seeded.Generator(9);
        using var lsh = new LshAttention(buckets: 4, rounds: 2, chunkLength: 4, causal: true);
        lsh.Forward(qk, v, g)[.., .., ..8].sum().backward();
        Assert.True(v.grad!.select(2, 8).abs().max().item<float>() == 0);
        Assert.True(v.grad![.., .., 8..].abs().max().item<float>() == 0);
        Assert.True(qk.grad![.., .., 8..].abs().max().item<float>() == 0);
        Assert.True(v.grad![.., .., ..8].abs().max().item<float>() > 0);
    }

    [Fact]
    public void DeterministicForASeed()
    {
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(7);
        using var lsh = new LshAttention(buckets: 4, rounds: 2, chunkLength: 4, causal: false);
        using var g1 = Seeded.Generator(11);
        using var g2 = Seeded.Generator(11);
        using var g3 = Seeded.Generator(12);
        var a = lsh.Forward(qk, v, g1);
        Assert.True(a.equal(lsh.Forward(qk, v, g2)).all().item<bool>());
        Assert.False(a.equal(lsh.Forward(qk, v, g3)).all().item<bool>());
    }

    [Fact]
    public void RejectsBadOptionsAndLengths()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new LshAttention(3, 1, 4, true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LshAttention(4, 0, 4, true));
        using var scope = NewDisposeScope();
        var (qk, v) = Inputs(8, t: 10);
        using var lsh = new LshAttention(4, 1, 4, true);
        Assert.Throws<ArgumentException>(() => lsh.Forward(qk, v, null));
    }
}
