using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class MfuTests
{
    [Fact]
    public void FlopsPerToken_is_6N_plus_12LHQT()
    {
        // 6·1,000,000 + 12·2·4·16·128 = 6,000,000 + 196,608
        Assert.Equal(6_196_608.0, Mfu.FlopsPerToken(1_000_000, layers: 2, heads: 4, headDim: 16, sequenceLength: 128));
        Assert.Equal(6.0 * 124_000_000 + 12.0 * 12 * 12 * 64 * 1024, Mfu.FlopsPerToken(124_000_000, 12, 12, 64, 1024));
    }

    [Fact]
    public void FlopsPerToken_does_not_overflow_for_large_models()
    {
        // L·H·Q·T = 2^7·2^7·2^8·2^17 = 2^39, beyond int and exactly representable in a double.
        Assert.Equal(12.0 * Math.Pow(2, 39), Mfu.FlopsPerToken(0, 128, 128, 256, 131_072));
    }

    [Fact]
    public void Compute_is_achieved_over_peak()
    {
        Assert.Equal(0.5, Mfu.Compute(flopsPerToken: 6e9, tokensPerSecond: 1000, peakFlops: 12e12));
        Assert.Equal(0.0, Mfu.Compute(6e9, 0, 12e12));
    }

    [Fact]
    public void Reproduces_PaLM_540B_model_flops_utilisation()
    {
        // PaLM Table 3: 540.35B parameters, L=118, H=48, Q=256, T=2048, 238.3K tokens/s on
        // 6144 TPU v4 chips of 275 TFLOP/s peak each, reported as 46.2% MFU.
        double flopsPerToken = Mfu.FlopsPerToken(540_350_000_000, 118, 48, 256, 2048);
        double mfu = Mfu.Compute(flopsPerToken, 238_300, 6144 * 275e12);
        Assert.Equal(0.462, mfu, precision: 3);
    }

    [Theory]
    [InlineData(-1, 1, 1, 1, 1)]
    [InlineData(1, 0, 1, 1, 1)]
    [InlineData(1, 1, 0, 1, 1)]
    [InlineData(1, 1, 1, 0, 1)]
    [InlineData(1, 1, 1, 1, 0)]
    public void FlopsPerToken_rejects_impossible_shapes(long n, int l, int h, int q, int t)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Mfu.FlopsPerToken(n, l, h, q, t));
    }

    [Theory]
    [InlineData(1, 1, 0)]
    [InlineData(1, 1, -5)]
    [InlineData(-1, 1, 1)]
    [InlineData(1, -1, 1)]
    [InlineData(double.NaN, 1, 1)]
    [InlineData(1, double.PositiveInfinity, 1)]
    public void Compute_rejects_meaningless_inputs(double flops, double tps, double peak)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Mfu.Compute(flops, tps, peak));
    }
}
