using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Quantization;

public class Int8WeightsTests
{
    private static Tensor RandomKernel(long outFeatures, long inFeatures, long seed)
    {
        using var generator = new Generator((ulong)seed);
        return randn(new[] { outFeatures, inFeatures }, generator: generator) * linspace(0.01, 3, outFeatures).unsqueeze(1); // rows of different ranges
    }

    [Fact]
    public void RoundTripErrorIsAtMostHalfAStepPerElement()
    {
        using var _ = NewDisposeScope();
        var w = RandomKernel(24, 40, seed: 1);
        var (values, scales) = Int8Weights.Quantize(w);
        Assert.Equal(ScalarType.Int8, values.dtype);
        Assert.Equal(ScalarType.Float32, scales.dtype);
        Assert.Equal(new long[] { 24, 40 }, values.shape);
        Assert.Equal(new long[] { 24 }, scales.shape);

        var error = (Int8Weights.Dequantize(values, scales, float32) - w).abs();     // (out, in)
        var bound = scales.unsqueeze(1) / 2 + 1e-6f;                                 // (out, 1)
        Assert.True(error.le(bound).all().item<bool>(), $"max error/scale = {(error / scales.unsqueeze(1)).max().item<float>()}");
        // Each row's largest magnitude maps to ±127 exactly and nothing leaves [-127, 127].
        Assert.True(values.abs().amax(new long[] { 1 }).eq(127).all().item<bool>());
        Assert.True(scales.eq(w.abs().amax(new long[] { 1 }) / 127).all().item<bool>());
    }

    [Fact]
    public void ScalesAreMaxAbsOver127AndValuesRoundToNearest()
    {
        using var _ = NewDisposeScope();
        // Powers of two keep every quotient exact, so the expected rounding is unambiguous.
        var w = tensor(new float[,] { { 31.75f, -15.875f, 0.625f, 0 }, { -63.5f, 63.5f, 0.75f, -0.25f } });
        var (values, scales) = Int8Weights.Quantize(w);
        Assert.Equal(new[] { 0.25f, 0.5f }, scales.data<float>().ToArray());
        // -63.5 -> -64, 2.5 -> 2, 1.5 -> 2, -0.5 -> 0: round half to even, as torch.round does.
        Assert.Equal(new sbyte[] { 127, -64, 2, 0, -127, 127, 2, 0 }, values.data<sbyte>().ToArray());
    }

    [Fact]
    public void ZeroRowsGetZeroScaleAndDequantizeExactly()
    {
        using var _ = NewDisposeScope();
        var w = RandomKernel(6, 8, seed: 2);
        w[2] = zeros(8);
        var (values, scales) = Int8Weights.Quantize(w);
        Assert.Equal(0f, scales[2].item<float>());
        Assert.True(values[2].eq(0).all().item<bool>());
        var restored = Int8Weights.Dequantize(values, scales, float32);
        Assert.False(restored.isnan().any().item<bool>());
        Assert.True(restored[2].eq(0).all().item<bool>());
    }

    [Fact]
    public void OutputScaledLinearEqualsDequantizedReference()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(3);
        var (values, scales) = Int8Weights.Quantize(RandomKernel(16, 12, seed: 4));
        var x = randn(new long[] { 2, 5, 12 }, generator: generator);
        var bias = randn(new long[] { 16 }, generator: generator);
        foreach (var b in new[] { null, bias })
        {
            var fast = Int8Weights.Linear(x, values, scales, b);            // (2, 5, 16)
            var reference = Int8Weights.ReferenceLinear(x, values, scales, b);
            Assert.Equal(new long[] { 2, 5, 16 }, fast.shape);
            Assert.True(fast.allclose(reference, rtol: 1e-5, atol: 1e-5));
        }
    }

    [Fact]
    public void RejectsKernelsThatAreNotMatrices()
    {
        using var _ = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Int8Weights.Quantize(zeros(3, 4, 5)));
        Assert.Contains("2-D", e.Message);
    }
}
