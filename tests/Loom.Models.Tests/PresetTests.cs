using Loom.Core;
using TorchSharp;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class PresetTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    [Theory]
    [InlineData("palm-8b", 8.63e9)]
    [InlineData("palm-62b", 62.50e9)]
    [InlineData("palm-540b", 540.35e9)]
    public void PalmPresetParameterCountsMatchThePaper(string preset, double paperCount)
    {
        using var _ = NewDisposeScope();
        var options = (DecoderLmOptions)ModelPresets.Load(preset, Configs);
        using var model = new DecoderLm(options, META);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        // The paper rounds to two decimals of a billion: allow half a unit of that rounding.
        Assert.InRange(model.ParameterCount, paperCount - 0.0051e9 * (paperCount > 100e9 ? 2 : 1), paperCount + 0.0051e9 * (paperCount > 100e9 ? 2 : 1));
    }

    [Fact]
    public void TinyPresetIsAPalmStyleByteModel()
    {
        var o = (DecoderLmOptions)ModelPresets.Load("tiny", Configs);
        Assert.True(o.ParallelBlock);
        Assert.Equal(MlpActivation.SwiGlu, o.Activation);
        Assert.Equal(1, o.NumKvHeads);
        Assert.Equal(PositionEncoding.Rotary, o.Positions);
        Assert.True(o.SharedEmbeddings);
        Assert.False(o.UseBias);
        Assert.True(o.VocabSize >= 258);
    }

    [Fact]
    public void UnknownPresetAndUnknownKeyAreRefused()
    {
        Assert.Contains("palm-8b", Assert.Throws<ConfigException>(() => ModelPresets.Load("palm-9b", Configs)).Message);
        string file = Path.Combine(Path.GetTempPath(), $"loom-bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{ "model_dim": 64, "num_layerz": 2 }""");
        try
        {
            var e = Assert.Throws<ConfigException>(() => ModelPresets.Load(file, Configs));
            Assert.Contains("num_layerz", e.Message);
            Assert.Contains("num_layers", e.Message); // lists the known keys
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void InitialisationFollowsPalm()
    {
        using var _ = NewDisposeScope();
        manual_seed(7);
        var o = TestModels.Tiny() with { ModelDim = 256, MlpDim = 512, VocabSize = 300 };
        var model = new DecoderLm(o);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(1.0, p["embed"].std().item<float>(), 1);                            // N(0, 1)
        Assert.Equal(1 / Math.Sqrt(256), p["blocks.0.attn.wq.weight"].std().item<float>(), 2); // N(0, 1/sqrt(fan_in))
        Assert.Equal(1 / Math.Sqrt(512), p["blocks.0.mlp.down.weight"].std().item<float>(), 2);
    }
}
