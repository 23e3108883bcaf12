using System.Text.Json;
using Loom.Core;
using Loom.Models.Interop;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Rotary scaling (model.rope_scaling) computes what transformers computes and travels through model.json and config.json.</summary>
public sealed class RopeScalingTests
{
    private static readonly RopeScaling Llama3 = new()
    {
        Type = RopeScalingType.Llama3, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 100,
    };

    [Fact]
    public void Llama3ScalingKeepsHighFrequenciesDividesLowOnesAndBlendsBetween()
    {
        // Head width 8, base 10000: unscaled frequencies 1, 0.1, 0.01, 0.001, wavelengths 2π/f = 6.28, 62.8, 628, 6283.
        // With an original context of 100: wavelengths under 100/4 = 25 are kept, over 100/1 = 100 divided by 8, and
        // 62.8 lies between, blended by s = (100/62.8 - 1) / (4 - 1).
        double s = (100 / (2 * Math.PI / 0.1) - 1) / (4 - 1);
        double[] expected = [1, (1 - s) * 0.1 / 8 + s * 0.1, 0.01 / 8, 0.001 / 8];
        var actual = Rotary.InverseFrequencies(8, 10000, Llama3.Validate());
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-15);
        Assert.Equal(0.0297535, actual[1], 1e-7); // the blend written out
    }

    [Fact]
    public void NtkScalingRaisesTheBase()
    {
        // Head width 8, factor 4: base' = 10000 · 4^(8/6), frequencies base'^(-2i/8), so the first is kept and the last
        // (10000^(-6/8) = 0.001) divided by exactly 4.
        double raised = 10000 * Math.Pow(4, 8.0 / 6);
        double[] expected = [1, Math.Pow(raised, -0.25), Math.Pow(raised, -0.5), Math.Pow(raised, -0.75)];
        var actual = Rotary.InverseFrequencies(8, 10000, new RopeScaling { Type = RopeScalingType.Ntk, Factor = 4 }.Validate());
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-15);
        Assert.Equal(0.001 / 4, actual[3], 1e-15);
        Assert.Equal(1, new RopeScaling { Type = RopeScalingType.Ntk, Factor = 4 }.AttentionScaling());
    }

    private static readonly RopeScaling Yarn = new() { Type = RopeScalingType.Yarn, Factor = 4, OriginalMaxPositionEmbeddings = 100 };

    [Fact]
    public void YarnKeepsFastDimensionsInterpolatesSlowOnesAndRampsBetween()
    {
        // Head width 8, base 10000, original context 100: the dimension turning r times over it is
        // 8 · ln(100 / (2π r)) / (2 ln 10000): r = 32 gives -0.303, floored to -1, clamped to 0; r = 1 gives 1.202, ceiled to 2.
        // The ramp (i - 0) / (2 - 0) is 0, 0.5, 1, 1: pair 0 kept, pair 1 half and half, pairs 2 and 3 divided by 4.
        double fast = 8 * Math.Log(100 / (32 * 2 * Math.PI)) / (2 * Math.Log(10000)), slow = 8 * Math.Log(100 / (2 * Math.PI)) / (2 * Math.Log(10000));
        Assert.Equal(-0.30333, fast, 1e-5);
        Assert.Equal(1.20183, slow, 1e-5);
        double[] expected = [1, 0.5 * 0.1 / 4 + 0.5 * 0.1, 0.01 / 4, 0.001 / 4];
        var actual = Rotary.InverseFrequencies(8, 10000, Yarn.Validate());
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-15);
        Assert.Equal(0.0625, actual[1], 1e-15);
        // Untruncated (gpt-oss), the ramp runs from 0 to 1.202 unrounded: pair 1 is 1/1.202 interpolated.
        var untruncated = Rotary.InverseFrequencies(8, 10000, (Yarn with { Truncate = false }).Validate());
        Assert.Equal(0.1 / 4 * (1 / slow) + 0.1 * (1 - 1 / slow), untruncated[1], 1e-15);
        Assert.Equal(0.01 / 4, untruncated[2], 1e-15);
        // Betas 8 and 2 move the ends: 8·ln(100/(16π))/18.42 = 0.30 → 0 and 8·ln(100/(4π))/18.42 = 0.90 → 1: ramp 0, 1, 1, 1.
        var narrow = Rotary.InverseFrequencies(8, 10000, (Yarn with { BetaFast = 8, BetaSlow = 2 }).Validate());
        double[] narrowed = [1, 0.1 / 4, 0.01 / 4, 0.001 / 4];
        for (int i = 0; i < narrowed.Length; i++) Assert.Equal(narrowed[i], narrow[i], 1e-15);
    }

    [Fact]
    public void YarnAttentionFactorIsGivenOrComputedFromTheFactor()
    {
        Assert.Equal(0.1 * Math.Log(4) + 1, Yarn.AttentionScaling(), 1e-15);
        Assert.Equal(1.1386294361, Yarn.AttentionScaling(), 1e-10);
        Assert.Equal(0.7, (Yarn with { AttentionFactor = 0.7 }).AttentionScaling());
        Assert.Equal((0.1 * Math.Log(4) + 1) / (0.05 * Math.Log(4) + 1), (Yarn with { Mscale = 1, MscaleAllDim = 0.5 }).AttentionScaling(), 1e-15);
        Assert.Equal(0.1 * Math.Log(4) + 1, (Yarn with { Mscale = 1, MscaleAllDim = 0 }).AttentionScaling(), 1e-15); // 0 is "not set"
        Assert.Equal(1, (Yarn with { Factor = 1 }).AttentionScaling());
        // cos and sin carry it: at position 0 (cos 1, sin 0) a vector comes back multiplied by it.
        using var scope = NewDisposeScope();
        var rotary = new Rotary(8, 16, 10000, scaling: Yarn);
        var x = ones([1, 1, 1, 8]);
        Assert.True(rotary.Apply(x, 0).allclose(x * Yarn.AttentionScaling(), rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void LinearScalingDividesPositionsByTheFactor()
    {
        using var scope = NewDisposeScope();
        var scaled = new Rotary(8, 32, 10000, scaling: new RopeScaling { Type = RopeScalingType.Linear, Factor = 4 });
        var plain = new Rotary(8, 32, 10000);
        using var g = Seeded.Generator(5);
        var x = randn([1, 2, 8, 8], generator: g);       // (B, H, T, Dh)
        var positions = arange(8L).unsqueeze(0);          // (1, T): 0..7
        var a = scaled.Apply(x, positions * 4);           // positions 0, 4, …, 28 under factor 4
        var b = plain.Apply(x, positions);                // … are positions 0, 1, …, 7 unscaled
        Assert.True(a.allclose(b, rtol: 0, atol: 1e-6), $"max difference {(a - b).abs().max().item<float>()}");
        Assert.Equal(Rotary.InverseFrequencies(8, 10000).Select(f => f / 4), Rotary.InverseFrequencies(8, 10000, new RopeScaling { Factor = 4 }));
    }

    [Fact]
    public void ScalingRoundTripsThroughModelJsonAndOptionsWithoutItStillRead()
    {
        var options = TinyModels.Decoder() with { RopeScaling = Llama3 };
        string json = JsonSerializer.Serialize<ModelOptions>(options, LoomJson.Options);
        Assert.Contains("\"rope_scaling\"", json);
        Assert.Contains("\"llama3\"", json);
        Assert.Equal(options, JsonSerializer.Deserialize<ModelOptions>(json, LoomJson.Options));
        var old = JsonSerializer.Serialize<ModelOptions>(TinyModels.Decoder(), LoomJson.Options).Replace("\"rope_scaling\": null,", "");
        Assert.DoesNotContain("rope_scaling", old);
        Assert.Null(Assert.IsType<DecoderLmOptions>(JsonSerializer.Deserialize<ModelOptions>(old, LoomJson.Options)).RopeScaling);
    }

    [Fact]
    public void InvalidScalingIsRefusedNamingTheField()
    {
        Assert.Contains("model.rope_scaling.factor = 0.5", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = new RopeScaling { Factor = 0.5 } }).Validate()).Message);
        Assert.Contains("model.rope_scaling.high_freq_factor", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = Llama3 with { HighFreqFactor = 1 } }).Validate()).Message);
        Assert.Contains("belong to llama3 scaling", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = new RopeScaling { Factor = 2, LowFreqFactor = 1 } }).Validate()).Message);
        Assert.Contains("model.rope_scaling.original_max_position_embeddings = null must be a positive integer for yarn", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = Yarn with { OriginalMaxPositionEmbeddings = null } }).Validate()).Message);
        Assert.Contains("model.rope_scaling.beta_fast = -1", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = Yarn with { BetaFast = -1 } }).Validate()).Message);
        Assert.Contains("belong to yarn scaling", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = new RopeScaling { Type = RopeScalingType.Ntk, Factor = 2, BetaFast = 32 } }).Validate()).Message);
        Assert.Contains("belong to llama3 scaling", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { RopeScaling = new RopeScaling { Type = RopeScalingType.Ntk, Factor = 2, OriginalMaxPositionEmbeddings = 8 } }).Validate()).Message);
        Assert.Contains("model.rope_scaling is set but model.positions = Learned", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { Positions = PositionEncoding.Learned, RopeScaling = new RopeScaling { Factor = 2 } }).Validate()).Message);
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("linear")]
    [InlineData("ntk")]
    [InlineData("yarn")]
    [InlineData("yarn-original")]
    public void ALlamaWithScaledRotaryPositionsRoundTripsThroughAHuggingFaceFolder(string name)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        string type = name.Split('-')[0];
        var scaling = name switch
        {
            "llama3" => Llama3 with { OriginalMaxPositionEmbeddings = 16 },
            "ntk" => new RopeScaling { Type = RopeScalingType.Ntk, Factor = 4 },
            // The original context is the model's own (32), so config.json leaves it out; the optional fields travel.
            "yarn" => Yarn with { OriginalMaxPositionEmbeddings = 32, BetaFast = 16, BetaSlow = 2, Mscale = 1, MscaleAllDim = 0.5, Truncate = false },
            // An original context of 8 in 32: transformers takes 32 / 8 = 4 as the factor, as this one is.
            "yarn-original" => Yarn with { OriginalMaxPositionEmbeddings = 8, AttentionFactor = 1.25 },
            _ => new RopeScaling { Factor = 2 },
        };
        using var model = Seeded.Model(TinyModels.Decoder(2, parallel: false) with { SharedEmbeddings = false, ScaleSharedLogits = false, RopeScaling = scaling }, 1);
        HuggingFaceModels.Export(model, temp.Path);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal(type, config["rope_scaling"]!["rope_type"]!.GetValue<string>());
        Assert.Equal(scaling.Factor, config["rope_scaling"]!["factor"]!.GetValue<double>());
        using var back = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        Assert.Equal(model.Options, back.Options);
        using var g = Seeded.Generator(3);
        var tokens = randint(0, 40, [2, 20], generator: g);
        Assert.True(model.forward(tokens).equal(back.forward(tokens)).all().item<bool>());
        // Scaling changes what the model computes beyond the first position.
        using var unscaled = Seeded.Model(TinyModels.Decoder(2, parallel: false) with { SharedEmbeddings = false }, 1);
        Assert.False(model.forward(tokens).allclose(unscaled.forward(tokens)));
    }

    [Fact]
    public void TheOlderTypeKeyAndUnknownTypesAreReadOrRefused()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Seeded.Model(TinyModels.Decoder(2, parallel: false) with { SharedEmbeddings = false }, 1);
        HuggingFaceModels.Export(model, temp.Path);
        string config = File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile));
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"));
        Assert.Equal(new RopeScaling { Factor = 2 }, ((DecoderLmOptions)HuggingFaceModels.ReadOptions(temp.Path)).RopeScaling);
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}"));
        Assert.Contains("rope_scaling type dynamic is not supported", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
        // YaRN without an original context: the model's (max_position_embeddings = 32) and the given factor …
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0, \"beta_fast\": 0}"));
        Assert.Equal(Yarn with { Factor = 2, OriginalMaxPositionEmbeddings = 32 }, ((DecoderLmOptions)HuggingFaceModels.ReadOptions(temp.Path)).RopeScaling);
        // … with one, transformers' factor max_position_embeddings / original, whatever "factor" says.
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0, \"original_max_position_embeddings\": 4, \"truncate\": false}"));
        Assert.Equal(Yarn with { Factor = 8, OriginalMaxPositionEmbeddings = 4, Truncate = false }, ((DecoderLmOptions)HuggingFaceModels.ReadOptions(temp.Path)).RopeScaling);
        // Export refuses a YaRN that transformers would read with another factor.
        using var inconsistent = Seeded.Model(TinyModels.Decoder(2, parallel: false) with { SharedEmbeddings = false, RopeScaling = Yarn with { OriginalMaxPositionEmbeddings = 8, Factor = 2 } }, 1);
        Assert.Contains("max_position_embeddings / original = 32/8", Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(inconsistent, temp.Path)).Message);
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"));
        Assert.Contains("has no \"low_freq_factor\"", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
    }
}
