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

    /// <summary>
    /// Where two float32 computations of x Wᵀ may part: each is within γ·Σ|x||w| of the exact product (summation
    /// in any order, γ = K·2⁻²⁴), plus a rounding each for applying the scale before or after the sum; so they
    /// agree within (K + 2)·2⁻²³ · (|x| |W|ᵀ), elementwise, plus a tiny absolute floor for sums near zero.
    /// </summary>
    private static Tensor Float32Bound(Tensor x, Tensor values, Tensor scales)
    {
        var w = Int8Weights.Dequantize(values, scales, float32).abs();                    // (out, in)
        long k = values.shape[1];
        return nn.functional.linear(x.abs(), w) * ((k + 2) * Math.Pow(2, -23)) + 1e-6;     // (..., out)
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 7, 3)]
    [InlineData(1, 33, 17)]      // neither a multiple of 16 (AVX-512 floats) nor of 8 (AVX2)
    [InlineData(1, 512, 1536)]   // a decode step's MLP up-projection
    [InlineData(2, 515, 129)]
    [InlineData(5, 100, 64)]
    [InlineData(Int8Weights.DirectKernelMaxRows, 48, 40)]
    public void DirectKernelAgreesWithTheWidenedReference(int rows, int inFeatures, int outFeatures)
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator((ulong)(rows * 1000 + inFeatures));
        var (values, scales) = Int8Weights.Quantize(RandomKernel(outFeatures, inFeatures, seed: outFeatures));
        var x = randn(new long[] { rows, inFeatures }, generator: generator);             // (M, in)
        var bias = randn(new long[] { outFeatures }, generator: generator);
        Assert.Equal(Int8Weights.DirectKernelIsSupported, Int8Weights.UsesDirectKernel(x, values));

        var direct = Int8Weights.Linear(x, values, scales, null);                          // (M, out)
        var reference = Int8Weights.ReferenceLinear(x, values, scales, null);
        Assert.Equal(new long[] { rows, outFeatures }, direct.shape);
        var error = (direct - reference).abs();
        var bound = Float32Bound(x, values, scales);
        Assert.True(error.le(bound).all().item<bool>(), $"max error / bound = {(error / bound).max().item<float>()}");
        var withBias = Int8Weights.Linear(x, values, scales, bias);
        Assert.True((withBias - (direct + bias)).abs().max().item<float>() == 0);
    }

    [Fact]
    public void DirectKernelRunsOnX86WithAvx512OrAvx2()
    {
        bool expected = System.Runtime.Intrinsics.X86.Avx512F.IsSupported
            || (System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported);
        Assert.Equal(expected, Int8Weights.DirectKernelIsSupported);
    }

    [Fact]
    public void DirectKernelKeepsLeadingDimensionsAndNonContiguousInputs()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(21);
        var (values, scales) = Int8Weights.Quantize(RandomKernel(24, 20, seed: 22));
        var x = randn(new long[] { 3, 20, 2 }, generator: generator).transpose(1, 2);    // (3, 2, 20), not contiguous
        Assert.Equal(Int8Weights.DirectKernelIsSupported, Int8Weights.UsesDirectKernel(x, values));
        var direct = Int8Weights.Linear(x, values, scales, null);                          // (3, 2, 24)
        Assert.Equal(new long[] { 3, 2, 24 }, direct.shape);
        var error = (direct - Int8Weights.ReferenceLinear(x, values, scales, null)).abs();
        Assert.True(error.le(Float32Bound(x, values, scales)).all().item<bool>());
    }

    [Fact]
    public void PrefillGradientsAndUnsupportedDtypesTakeTheWidenedPath()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(25);
        var (values, scales) = Int8Weights.Quantize(RandomKernel(16, 12, seed: 26));
        var prefill = randn(new long[] { 1, Int8Weights.DirectKernelMaxRows + 1, 12 }, generator: generator); // (1, 33, in)
        var trainable = randn(new long[] { 1, 12 }, generator: generator).requires_grad_();
        var doubles = randn(new long[] { 1, 12 }, generator: generator).to(float64);
        var halves = randn(new long[] { 1, 12 }, generator: generator).to(bfloat16);
        Assert.False(Int8Weights.UsesDirectKernel(prefill, values));
        Assert.False(Int8Weights.UsesDirectKernel(trainable, values));
        Assert.False(Int8Weights.UsesDirectKernel(doubles, values));
        Assert.False(Int8Weights.UsesDirectKernel(halves, values));
        Assert.False(Int8Weights.UsesDirectKernel(prefill.narrow(1, 0, 0), values));      // no rows
        Assert.False(Int8Weights.UsesDirectKernel(randn(1, 12), values.to(float32)));    // not an int8 kernel
        using (no_grad()) Assert.Equal(Int8Weights.DirectKernelIsSupported, Int8Weights.UsesDirectKernel(trainable, values)); // inference on a leaf that wants gradients
        foreach (var x in new[] { prefill, trainable, doubles })
        {
            var y = Int8Weights.Linear(x, values, scales, null);
            Assert.True(y.allclose(Int8Weights.ReferenceLinear(x, values, scales, null), rtol: 1e-5, atol: 1e-5));
        }
        Assert.True(Int8Weights.Linear(trainable, values, scales, null).requires_grad); // the widened path keeps autograd

        // DirectLinear itself takes any number of rows, and refuses what the kernel cannot take.
        if (!Int8Weights.DirectKernelIsSupported) return;
        var direct = Int8Weights.DirectLinear(prefill, values, scales);                     // (1, 33, 16)
        Assert.True((direct - Int8Weights.ReferenceLinear(prefill, values, scales, null)).abs().le(Float32Bound(prefill, values, scales)).all().item<bool>());
        Assert.Throws<NotSupportedException>(() => Int8Weights.DirectLinear(doubles, values, scales));
        Assert.Throws<NotSupportedException>(() => Int8Weights.DirectLinear(trainable, values, scales));
    }

    [Fact]
    public void RejectsKernelsThatAreNotMatrices()
    {
        using var _ = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Int8Weights.Quantize(zeros(3, 4, 5)));
        Assert.Contains("2-D", e.Message);
    }
}
