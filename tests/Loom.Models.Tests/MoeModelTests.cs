using Loom.Data;
using Loom.Models;
using Loom.Models.Layers;
using Loom.Models.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Mixture-of-experts layers inside the decoder: counts, auxiliary losses, statistics, quantization and decoding.</summary>
public class MoeModelTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    [Fact]
    public void MixtralPresetCountsItsTotalAndActiveParametersOnTheMetaDevice()
    {
        using var _ = NewDisposeScope();
        var options = Assert.IsType<DecoderLmOptions>(ModelPresets.Load("mixtral-8x7b", Configs));
        using var model = options.Build(META);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.Equal(46_702_792_704L, model.ParameterCount);
        Assert.Equal(12_879_925_248L, model.ActiveParameterCount);
    }

    [Fact]
    public void TinyMoePresetHasTheDenseTinyPresetsActiveParametersPlusItsRouters()
    {
        using var _ = NewDisposeScope();
        using var dense = ModelPresets.Load("tiny", Configs).Build(META);
        var moeOptions = Assert.IsType<DecoderLmOptions>(ModelPresets.Load("tiny-moe", Configs));
        using var moe = moeOptions.Build(META);
        long routers = (long)moeOptions.NumLayers * moeOptions.Moe!.NumExperts * moeOptions.ModelDim;
        Assert.Equal(dense.ParameterCount + routers, moe.ActiveParameterCount);
        Assert.True(moe.ParameterCount > 2 * dense.ParameterCount); // 8 experts of half the width: 4x the MLP parameters
    }

    [Fact]
    public void EveryKthLayerIsAnMoeLayer()
    {
        using var _ = NewDisposeScope();
        using var model = (DecoderLm)TinyModels.MoeDecoder(every: 2).Build(META);
        var names = model.named_modules().Where(m => m.module is MoeMlp).Select(m => m.name).ToList();
        Assert.Equal(["blocks.1.mlp"], names); // 2 layers: the second of every 2
    }

    [Fact]
    public void TheLossCarriesWeightedAuxiliaryLossesAndRoutingStatistics()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(3);
        var options = TinyModels.MoeDecoder();
        using var model = options.Build(CPU, g);
        var tokens = randint(0, 40, [2, 12], generator: g);
        using var batch = FeatureBatch.Decoder(tokens, tokens.roll(-1, 1));
        var loss = model.Loss(batch, zLossWeight: 0);
        Assert.Equal(["load_balancing", "router_z_loss"], loss.Auxiliary.Keys.Order());
        // Total = cross-entropy + the weighted auxiliary losses.
        double expected = loss.CrossEntropy.item<float>() + loss.Auxiliary.Values.Sum(t => t.item<float>());
        Assert.Equal(expected, loss.Total.item<float>(), 4);
        // The load-balancing loss is α · E · Σ fᵢ Pᵢ: at least α (its minimum, at uniform routing).
        Assert.True(loss.Auxiliary["load_balancing"].item<float>() >= options.Moe!.LoadBalancingWeight * 0.999);
        var load = loss.Statistics["expert_load"];
        Assert.Equal([4L], load.shape);
        Assert.Equal(1.0, load.sum().item<float>(), 4);
        Assert.InRange(loss.Statistics["dropped_fraction"].item<float>(), 0, 1);

        loss.Total.backward();
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.EndsWith("router_weight", StringComparison.Ordinal)))
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} got no gradient");
    }

    [Fact]
    public void PackingPaddingIsNotRouted()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(4);
        using var model = TinyModels.MoeDecoder(capacityFactor: null).Build(CPU, g);
        var tokens = randint(0, 40, [1, 8], generator: g);
        var segments = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0 }).unsqueeze(0);
        var positions = tensor(new long[] { 0, 1, 2, 3, 4, 0, 0, 0 }).unsqueeze(0);
        using var packed = FeatureBatch.Decoder(tokens, tokens, segments, positions, segments.to(float32));
        using var alone = FeatureBatch.Decoder(tokens.narrow(1, 0, 5), tokens.narrow(1, 0, 5));
        var a = model.Loss(packed, 0);
        var b = model.Loss(alone, 0);
        Assert.True(a.Statistics["expert_load"].allclose(b.Statistics["expert_load"], atol: 1e-6));
        Assert.Equal(b.Auxiliary["load_balancing"].item<float>(), a.Auxiliary["load_balancing"].item<float>(), 5);
    }

    [Fact]
    public void Int8QuantizationCoversTheExpertsButNotTheRouter()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(5);
        using var model = TinyModels.MoeDecoder().Build(CPU, g);
        var tokens = randint(0, 40, [2, 10], generator: g);
        model.eval();
        using var noGrad = no_grad();
        var before = model.Forward(tokens, null);
        var report = model.Quantize(QuantizationMode.Int8);
        // Per layer: q, k, v, o (Dense) + gate, up, down (ExpertDense): 7 kernels; shared embeddings stay float.
        Assert.Equal(2 * 7, report.Layers);
        Assert.All(model.modules().OfType<MoeMlp>(), m => Assert.True(m.IsQuantized));
        Assert.All(model.modules().OfType<MoeMlp>(), m => Assert.Equal(ScalarType.Float32, m.RouterWeight.dtype));
        var after = model.Forward(tokens, null);
        double relative = (after - before).norm().item<float>() / before.norm().item<float>();
        Assert.InRange(relative, 0, 0.02);
    }

    [Fact]
    public void CachedDecodingEqualsTheFullForwardBecauseEvaluationRoutesDroplessly()
    {
        using var _ = NewDisposeScope();
        using var g = Seeded.Generator(6);
        // A capacity factor so small that training would drop most assignments: evaluation must not.
        using var model = TinyModels.MoeDecoder(capacityFactor: 0.1).Build(CPU, g);
        model.eval();
        using var noGrad = no_grad();
        var tokens = randint(0, 40, [2, 12], generator: g);
        var full = model.Forward(tokens, null);                                          // (2, 12, V)
        using var cache = KvCache.For(model, 2, 12);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 7));
        var steps = Enumerable.Range(7, 5).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToList();
        var cached = cat(new[] { prefill }.Concat(steps).ToList(), 1);
        Assert.True(full.allclose(cached, rtol: 1e-4, atol: 1e-5), $"max diff {(full - cached).abs().max().item<float>()}");
    }

    [Fact]
    public void TopKAboveTheExpertCountIsAOneLineError()
    {
        var e = Assert.Throws<ArgumentException>(() => TinyModels.MoeDecoder(experts: 1, topK: 2).Validate());
        Assert.Equal("model.moe.top_k = 2 must be at most model.moe.num_experts = 1", e.Message);
    }
}
