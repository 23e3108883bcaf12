using Loom.Models;
using Loom.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class MixtureOfExpertsTests
{
    private static readonly double Ln2 = Math.Log(2), Ln3 = Math.Log(3), Ln7 = Math.Log(7);

    /// <summary>Expert <paramref name="expert"/> of <paramref name="moe"/> as a dense Mlp computation on x, (..., D).</summary>
    private static Tensor Expert(MoeMlp moe, long expert, Tensor x)
    {
        var up = nn.functional.linear(x, moe.Up.Weight[expert], moe.Up.Bias?[expert]);               // (..., F)
        var h = moe.Gate is null
            ? nn.functional.gelu(up)
            : nn.functional.silu(nn.functional.linear(x, moe.Gate.Weight[expert], moe.Gate.Bias?[expert])) * up; // (..., F)
        return nn.functional.linear(h, moe.Down.Weight[expert], moe.Down.Bias?[expert]);             // (..., D)
    }

    private static void SetRouter(MoeMlp moe, float[,] weights)
    {
        using var noGrad = no_grad();
        moe.RouterWeight.copy_(tensor(weights));
    }

    private static void RandomBiases(MoeMlp moe, Generator generator)
    {
        using var noGrad = no_grad();
        foreach (var layer in new[] { moe.Gate, moe.Up, moe.Down })
            layer?.Bias?.copy_(randn(layer.Bias.shape, generator: generator));
    }

    private static float Scalar(Tensor t) => t.item<float>();

    private static float[] Values(Tensor t) => t.data<float>().ToArray();

    [Theory]
    [InlineData(MlpActivation.SwiGlu, false)]
    [InlineData(MlpActivation.Gelu, false)]
    [InlineData(MlpActivation.SwiGlu, true)]
    [InlineData(MlpActivation.Gelu, true)]
    public void OneExpertTopOneIsTheDenseMlp(MlpActivation activation, bool useBias)
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(1);
        foreach (double? capacityFactor in new double?[] { null, 1.0 })
        {
            var moe = new MoeMlp(16, 32, numExperts: 1, topK: 1, capacityFactor, activation, useBias, generator: generator);
            if (useBias) RandomBiases(moe, generator);
            var x = randn(new long[] { 2, 5, 16 }, generator: generator);
            var result = moe.call(x, null);
            // One expert: softmax over one logit is 1, so the gate is exactly 1 and C = N drops nothing.
            Assert.True(allclose(result.Output, Expert(moe, 0, x), rtol: 1e-5, atol: 1e-6));
            Assert.Equal(10, result.Capacity);
            Assert.Equal(0f, Scalar(result.DroppedFraction));
            Assert.Equal(new[] { 1f }, Values(result.ExpertLoad));
            Assert.Equal(1f, Scalar(result.LoadBalancingLoss), 6);
        }
    }

    [Theory]
    [InlineData(1, MlpActivation.SwiGlu)]
    [InlineData(1, MlpActivation.Gelu)]
    [InlineData(2, MlpActivation.SwiGlu)]
    [InlineData(2, MlpActivation.Gelu)]
    public void UnlimitedCapacityMatchesThePerTokenLoop(int topK, MlpActivation activation)
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(2);
        var x = randn(new long[] { 3, 5, 16 }, generator: generator);
        // Dropless, and a capacity factor of E, whose C = min(N, E · N · k / E) = N can hold every assignment.
        foreach (double? capacityFactor in new double?[] { null, 4.0 })
        {
            var moe = new MoeMlp(16, 24, numExperts: 4, topK, capacityFactor, activation, useBias: true, generator: generator);
            RandomBiases(moe, generator);
            var result = moe.call(x, null);
            var reference = moe.Reference(x);
            Assert.True(allclose(result.Output, reference, rtol: 1e-5, atol: 1e-5), $"max diff {(result.Output - reference).abs().max().item<float>()}");
            Assert.Equal(0f, Scalar(result.DroppedFraction));
            Assert.Equal(1f, Scalar(result.ExpertLoad.sum()), 5);
            // Dropless sizes the buffer to the busiest expert exactly.
            long busiest = (long)Math.Round(Scalar(result.ExpertLoad.max()) * topK * 15);
            Assert.Equal(capacityFactor is null ? busiest : 15, result.Capacity);
        }
    }

    [Fact]
    public void TopOneTokensOverCapacityComeOutAsZero()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(3);
        var moe = new MoeMlp(4, 8, numExperts: 4, topK: 1, capacityFactor: 1.0, MlpActivation.SwiGlu, generator: generator);
        // Positive inputs and a router whose only nonzero row is expert 0's: every token picks expert 0.
        SetRouter(moe, new float[,] { { 1, 1, 1, 1 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } });
        var x = rand(new long[] { 2, 4, 4 }, generator: generator) + 0.1;                 // (2, 4, 4)
        var result = moe.call(x, null);

        // C = ceil(1 · 8 · 1 / 4) = 2: the first two tokens in order keep their slot, the other six are dropped.
        Assert.Equal(2, result.Capacity);
        var output = result.Output.reshape(8, 4);
        var reference = moe.Reference(x).reshape(8, 4);
        Assert.True(allclose(output[..2], reference[..2], rtol: 1e-5, atol: 1e-6));
        Assert.True(output[..2].abs().sum().item<float>() > 0);
        Assert.True(output[2..].eq(0).all().item<bool>());
        var residual = x.reshape(8, 4) + output;
        Assert.True(residual[2..].eq(x.reshape(8, 4)[2..]).all().item<bool>());
        Assert.Equal(0.75f, Scalar(result.DroppedFraction));
        Assert.Equal(new[] { 1f, 0, 0, 0 }, Values(result.ExpertLoad)); // the router's choices, before drops
    }

    [Fact]
    public void TopTwoTokensOverCapacityComeOutAsZero()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(4);
        var moe = new MoeMlp(4, 8, numExperts: 4, topK: 2, capacityFactor: 1.0, MlpActivation.Gelu, generator: generator);
        // Every token: expert 0 first, expert 1 second.
        SetRouter(moe, new float[,] { { 2, 2, 2, 2 }, { 1, 1, 1, 1 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } });
        var x = rand(new long[] { 2, 4, 4 }, generator: generator) + 0.1;
        var result = moe.call(x, null);

        // C = ceil(1 · 8 · 2 / 4) = 4: tokens 0-3 keep both experts, tokens 4-7 lose both and come out as 0.
        Assert.Equal(4, result.Capacity);
        var output = result.Output.reshape(8, 4);
        Assert.True(allclose(output[..4], moe.Reference(x).reshape(8, 4)[..4], rtol: 1e-5, atol: 1e-6));
        Assert.True(output[4..].eq(0).all().item<bool>());
        Assert.True((x.reshape(8, 4) + output)[4..].eq(x.reshape(8, 4)[4..]).all().item<bool>());
        Assert.Equal(0.5f, Scalar(result.DroppedFraction));
        Assert.Equal(new[] { 0.5f, 0.5f, 0, 0 }, Values(result.ExpertLoad));
    }

    [Fact]
    public void FirstChoicesTakeSlotsBeforeSecondChoices()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(5);
        var moe = new MoeMlp(4, 8, numExperts: 3, topK: 2, capacityFactor: 0.75, MlpActivation.SwiGlu, generator: generator);
        // Feature 0 is +1 for tokens 0-3 and -1 for tokens 4-7, feature 1 is 1: logits (2, 0, -5) route
        // tokens 0-3 to experts 0 then 1, logits (0, 2, -5) route tokens 4-7 to experts 1 then 0.
        SetRouter(moe, new float[,] { { 1, 1, 0, 0 }, { -1, 1, 0, 0 }, { 0, -5, 0, 0 } });
        var x = randn(new long[] { 1, 8, 4 }, generator: generator);
        x[0, .., 0] = cat(new[] { ones(4), -ones(4) });
        x[0, .., 1] = ones(8);
        var result = moe.call(x, null);

        // C = ceil(0.75 · 8 · 2 / 3) = 4. Token-major priority would give tokens 0-1 both experts and
        // tokens 6-7 none; GShard's gives every token its first choice and none its second.
        Assert.Equal(4, result.Capacity);
        Assert.Equal(0.5f, Scalar(result.DroppedFraction));
        var p = nn.functional.softmax(tensor(new float[] { 2, 0, -5 }), 0);
        float firstGate = Scalar(p[0] / (p[0] + p[1]));
        var tokens = x[0];                                                                 // (8, 4)
        var expected = cat(new[] { Expert(moe, 0, tokens[..4]), Expert(moe, 1, tokens[4..]) }) * firstGate; // (8, 4)
        Assert.True(allclose(result.Output[0], expected, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void LoadBalancingLossIsTheSwitchFormula()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(6);
        // Router = identity, so the logits are the inputs: (ln 3, 0) gives p = (3/4, 1/4), (0, ln 3) gives (1/4, 3/4).
        var x = tensor(new float[] { (float)Ln3, 0, (float)Ln3, 0, (float)Ln3, 0, 0, (float)Ln3 }).reshape(1, 4, 2);

        var top1 = new MoeMlp(2, 4, numExperts: 2, topK: 1, capacityFactor: null, MlpActivation.SwiGlu, generator: generator);
        SetRouter(top1, new float[,] { { 1, 0 }, { 0, 1 } });
        var result = top1.call(x, null);
        // f = (3/4, 1/4); P = ((3 · 3/4 + 1/4) / 4, (3 · 1/4 + 3/4) / 4) = (5/8, 3/8);
        // loss = 2 · (3/4 · 5/8 + 1/4 · 3/8) = 2 · 18/32 = 1.125.
        Assert.Equal(new[] { 0.75f, 0.25f }, Values(result.ExpertLoad));
        Assert.Equal(1.125f, Scalar(result.LoadBalancingLoss), 5);

        // Top-2 of two experts sends every token to both: f = (1/2, 1/2), loss = 2 · (5/8 + 3/8) / 2 = 1.
        var top2 = new MoeMlp(2, 4, numExperts: 2, topK: 2, capacityFactor: null, MlpActivation.SwiGlu, generator: generator);
        SetRouter(top2, new float[,] { { 1, 0 }, { 0, 1 } });
        var result2 = top2.call(x, null);
        Assert.Equal(new[] { 0.5f, 0.5f }, Values(result2.ExpertLoad));
        Assert.Equal(1f, Scalar(result2.LoadBalancingLoss), 5);
    }

    [Fact]
    public void RouterZLossIsMeanSquaredLogSumExp()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(7);
        var moe = new MoeMlp(2, 4, numExperts: 2, topK: 1, capacityFactor: 1.25, MlpActivation.Gelu, generator: generator);
        SetRouter(moe, new float[,] { { 1, 0 }, { 0, 1 } });
        // logsumexp(ln 3, 0) = ln 4 = 2 ln 2 and logsumexp(ln 7, 0) = ln 8 = 3 ln 2: z = (4 + 9) / 2 · ln² 2.
        var x = tensor(new float[] { (float)Ln3, 0, (float)Ln7, 0 }).reshape(1, 2, 2);
        Assert.Equal(6.5 * Ln2 * Ln2, Scalar(moe.call(x, null).RouterZLoss), 5);
    }

    [Fact]
    public void PaddingTakesNoSlotAndCountsInNoStatistic()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(8);
        var moe = new MoeMlp(2, 4, numExperts: 2, topK: 1, capacityFactor: null, MlpActivation.SwiGlu, generator: generator);
        SetRouter(moe, new float[,] { { 1, 0 }, { 0, 1 } });
        // Tokens A A A B B B with the last two B padding: the statistics are those of A A A B.
        float a = (float)Ln3;
        var x = tensor(new float[] { a, 0, a, 0, a, 0, 0, a, 0, a, 0, a }).reshape(1, 6, 2);
        var mask = tensor(new float[] { 1, 1, 1, 1, 0, 0 }).reshape(1, 6);
        var result = moe.call(x, mask);
        Assert.Equal(new[] { 0.75f, 0.25f }, Values(result.ExpertLoad));
        Assert.Equal(1.125f, Scalar(result.LoadBalancingLoss), 5);
        Assert.Equal(4 * Ln2 * Ln2, Scalar(result.RouterZLoss), 5);
        Assert.Equal(3, result.Capacity); // expert 0's three real tokens; the padding B's would not change it anyway
        Assert.True(result.Output[0, 4..].eq(0).all().item<bool>());
        Assert.True(allclose(result.Output[.., ..4], moe.call(x[.., ..4], null).Output, rtol: 1e-6, atol: 1e-7));
        Assert.True(allclose(result.Output, moe.Reference(x, mask), rtol: 1e-5, atol: 1e-6));

        // With capacity, padding at the front takes no slot: all six tokens want expert 0, C = ceil(6 / 2) = 3,
        // and the real tokens 2, 3, 4 keep their slots; only token 5 is dropped, a quarter of the real assignments.
        var capped = new MoeMlp(2, 4, numExperts: 2, topK: 1, capacityFactor: 1.0, MlpActivation.SwiGlu, generator: generator);
        SetRouter(capped, new float[,] { { 1, 0 }, { 0, 1 } });
        var allA = tensor(new float[] { a, 0, a, 0, a, 0, a, 0, a, 0, a, 0 }).reshape(1, 6, 2);
        var frontPadding = tensor(new float[] { 0, 0, 1, 1, 1, 1 }).reshape(1, 6);
        var cappedResult = capped.call(allA, frontPadding);
        Assert.Equal(3, cappedResult.Capacity);
        Assert.Equal(0.25f, Scalar(cappedResult.DroppedFraction));
        Assert.Equal(new[] { 1f, 0 }, Values(cappedResult.ExpertLoad));
        var rowIsZero = cappedResult.Output[0].eq(0).all(1);                               // (6)
        Assert.Equal(new[] { true, true, false, false, false, true }, rowIsZero.data<bool>().ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void GradientsReachTheRouter(int topK)
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(9);
        var moe = new MoeMlp(8, 16, numExperts: 4, topK, capacityFactor: 1.25, MlpActivation.SwiGlu, generator: generator);
        moe.train();
        var x = randn(new long[] { 2, 6, 8 }, generator: generator);

        // Through the gates alone (Switch's k = 1 gate is the router probability itself).
        moe.call(x, null).Output.square().sum().backward();
        Assert.True(moe.RouterWeight.grad is { } fromOutput && fromOutput.abs().sum().item<float>() > 0);
        Assert.True(moe.Up.Weight.grad is { } upGrad && upGrad.abs().sum().item<float>() > 0);

        // Through the auxiliary losses alone, as a training step adds them.
        moe.zero_grad();
        var result = moe.call(x, null);
        (result.LoadBalancingLoss * 0.01 + result.RouterZLoss * 0.001).backward();
        Assert.True(moe.RouterWeight.grad is { } fromAux && fromAux.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void Int8ExpertsStayCloseAndShrinkFourfold()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(10);
        var moe = new MoeMlp(64, 128, numExperts: 4, topK: 2, capacityFactor: null, MlpActivation.SwiGlu, generator: generator);
        moe.eval();
        var x = randn(new long[] { 2, 6, 64 }, generator: generator);
        var floatOutput = moe.call(x, null).Output;
        long before = moe.KernelBytes;

        moe.QuantizeInt8();
        Assert.True(moe.IsQuantized);
        var quantized = moe.call(x, null).Output;
        double relative = ((quantized - floatOutput).norm() / floatOutput.norm()).item<float>();
        Assert.True(relative < 0.02, $"relative error {relative}");
        // The scaled-output product equals the dequantized per-token reference.
        Assert.True(allclose(quantized, moe.Reference(x), rtol: 1e-4, atol: 1e-5));

        double ratio = (double)before / moe.KernelBytes;
        Assert.InRange(ratio, 3.5, 4.0); // 4x on the expert kernels, less the scales and the float router
        var keys = moe.state_dict().Keys.ToList();
        Assert.Contains("router_weight", keys);
        Assert.Contains("gate.weight_int8", keys);
        Assert.Contains("down.weight_scale", keys);
        Assert.DoesNotContain("up.weight", keys);
        Assert.Equal(ScalarType.Int8, moe.Up.QuantizedWeight!.Value.Values.dtype);
        Assert.Equal(new long[] { 4, 128 }, moe.Up.QuantizedWeight!.Value.Scales.shape);
        Assert.Equal(ScalarType.Float32, moe.RouterWeight.dtype);

        Assert.Throws<InvalidOperationException>(() => moe.QuantizeInt8());
        moe.train();
        Assert.Contains("inference only", Assert.Throws<InvalidOperationException>(() => moe.call(x, null)).Message);
    }

    [Fact]
    public void RouterRunsInFloat32ForBfloat16Activations()
    {
        using var _ = NewDisposeScope();
        using var generator = new Generator(11);
        var moe = new MoeMlp(16, 32, numExperts: 4, topK: 2, capacityFactor: null, MlpActivation.SwiGlu, generator: generator);
        moe.to(bfloat16);
        var x = randn(new long[] { 2, 5, 16 }, generator: generator).to(bfloat16);
        var result = moe.call(x, null);
        Assert.Equal(ScalarType.BFloat16, result.Output.dtype);
        Assert.Equal(ScalarType.Float32, result.LoadBalancingLoss.dtype);
        Assert.Equal(ScalarType.Float32, result.RouterZLoss.dtype);
        Assert.True(allclose(result.Output.to(float32), moe.Reference(x).to(float32), rtol: 2e-2, atol: 2e-2));
    }

    [Fact]
    public void ParameterCountsCoverRouterAndExperts()
    {
        using var _ = NewDisposeScope();
        // SwiGLU, no bias: router 4 · 16 = 64, an expert 3 · 16 · 32 = 1536.
        Assert.Equal(64 + 4 * 1536, MoeMlp.ParameterCount(16, 32, 4, MlpActivation.SwiGlu));
        Assert.Equal(64 + 2 * 1536, MoeMlp.ActiveParameterCount(16, 32, 4, 2, MlpActivation.SwiGlu));
        foreach (var (activation, useBias) in new[] { (MlpActivation.SwiGlu, true), (MlpActivation.Gelu, false), (MlpActivation.Gelu, true) })
        {
            var moe = new MoeMlp(16, 32, 4, 1, null, activation, useBias, device: META);
            Assert.Equal(moe.parameters().Sum(p => p.NumberOfElements), MoeMlp.ParameterCount(16, 32, 4, activation, useBias));
        }
        // GELU with biases: an expert is 2 · 16 · 32 weights + 32 + 16 biases.
        Assert.Equal(64 + 1024 + 48, MoeMlp.ActiveParameterCount(16, 32, 4, 1, MlpActivation.Gelu, useBias: true));
    }

    [Fact]
    public void WrongShapesAreRefused()
    {
        using var _ = NewDisposeScope();
        var moe = new MoeMlp(8, 16, 4, 2, null, MlpActivation.SwiGlu);
        Assert.Contains("(B, T, D)", Assert.Throws<ArgumentException>(() => moe.call(zeros(6, 8), null)).Message);
        Assert.Contains("mask of shape (B, T) = [2, 3]", Assert.Throws<ArgumentException>(() => moe.call(zeros(2, 3, 8), ones(3, 2))).Message);
    }

    [Fact]
    public void InvalidRoutingNamesTheField()
    {
        string Error(int experts, int topK, double? capacityFactor) =>
            Assert.Throws<ArgumentException>(() => new MoeMlp(8, 16, experts, topK, capacityFactor, MlpActivation.SwiGlu, device: META)).Message;

        Assert.Equal("model.moe.top_k = 3 must be at most model.moe.num_experts = 2", Error(2, 3, null));
        Assert.Contains("model.moe.top_k = 3 must be 1 (Switch) or 2", Error(4, 3, null));
        Assert.Contains("model.moe.top_k = 0", Error(4, 0, null));
        Assert.Contains("model.moe.num_experts = 0", Error(0, 1, null));
        Assert.Contains("model.moe.capacity_factor = 0 must be positive", Error(4, 2, 0));
        Assert.Contains("model.moe.capacity_factor = -1", Error(4, 2, -1));
        Assert.Contains("model.moe.capacity_factor", Error(4, 2, double.NaN));
        Assert.Contains("modelDim", Assert.Throws<ArgumentException>(() => new MoeMlp(0, 16, 4, 2, null, MlpActivation.Gelu)).Message);
    }
}
