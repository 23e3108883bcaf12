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
        Assert.Contains("model.rope_scaling is set but model.positions = Learned", Assert.Throws<ArgumentException>(() => (TinyModels.Decoder() with { Positions = PositionEncoding.Learned, RopeScaling = new RopeScaling { Factor = 2 } }).Validate()).Message);
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("linear")]
    public void ALlamaWithScaledRotaryPositionsRoundTripsThroughAHuggingFaceFolder(string type)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        var scaling = type == "llama3" ? Llama3 with { OriginalMaxPositionEmbeddings = 16 } : new RopeScaling { Factor = 2 };
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
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0}"));
        Assert.Contains("rope_scaling type yarn is not supported", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
        File.WriteAllText(temp.File(HuggingFaceModels.ConfigFile), config.Replace("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"));
        Assert.Contains("has no \"low_freq_factor\"", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
    }
}
