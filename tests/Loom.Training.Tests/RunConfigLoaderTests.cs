using Loom.Core;
using Loom.Models;
using Loom.Training.Tests.Metrics;

namespace Loom.Training.Tests;

public class RunConfigLoaderTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    [Fact]
    public void LayersApplyInOrderPresetRunFileOverrides()
    {
        using var dir = new TempDirectory();
        string run = dir.File("run.json");
        File.WriteAllText(run, """
            // comments are allowed
            { "model_preset": "tiny", "model": { "num_layers": 3 }, "training": { "steps": 7, "optimizer": "adamw" } }
            """);
        var config = RunConfigLoader.Load(run, null, new[] { "training.steps=9", "model.model_dim=128", "data.path=some.txt" }, Configs);
        var tiny = Assert.IsType<DecoderLmOptions>(ModelPresets.Load("tiny", Configs));
        var model = Assert.IsType<DecoderLmOptions>(config.Model);
        Assert.Equal(3, model.NumLayers);          // run file over preset
        Assert.Equal(128, model.ModelDim);         // override over preset
        Assert.Equal(tiny.NumHeads, model.NumHeads); // preset over defaults
        Assert.Equal(9, config.Training.Steps);           // override over run file
        Assert.Equal("adamw", config.Training.Optimizer);
        Assert.Equal("some.txt", config.Data.Path);
        Assert.Equal("tiny", config.ModelPreset);

        // The resolved config round-trips through config.json.
        string saved = dir.File("config.json");
        File.WriteAllText(saved, RunConfigLoader.ToJson(config));
        Assert.Equal(RunConfigLoader.ToJson(config), RunConfigLoader.ToJson(RunConfigLoader.ReadResolved(saved)));
    }

    [Theory]
    [InlineData("model.num_layerz=2", "model.num_layerz")]
    [InlineData("training.stepz=2", "training.stepz")]
    [InlineData("colour=blue", "colour")]
    public void UnknownKeysAreNamed(string assignment, string key)
    {
        var e = Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "tiny", new[] { assignment }, Configs));
        Assert.Contains($"'{key}'", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Theory]
    [InlineData("model.num_layers=four", "model.num_layers")]
    [InlineData("model.num_layers=0", "num_layers")]
    [InlineData("training.optimizer=sgd", "training.optimizer")]
    [InlineData("model.activation=relu", "model.activation")]
    [InlineData("data.sequence_length=4096", "data.sequence_length")]
    public void BadValuesAreNamed(string assignment, string key)
    {
        var e = Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "tiny", new[] { assignment }, Configs));
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void MissingRunFileAndPresetAreReported()
    {
        Assert.Contains("nope.json", Assert.Throws<ConfigException>(() => RunConfigLoader.Load("nope.json", null, Array.Empty<string>(), Configs)).Message);
        Assert.Contains("tiny", Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "huge", Array.Empty<string>(), Configs)).Message);
    }

    [Fact]
    public void DemoRunConfigResolves()
    {
        var config = RunConfigLoader.Load("demo", null, Array.Empty<string>(), Configs);
        Assert.Equal("austen", config.Data.Corpus);
        Assert.Null(config.Data.Path);
        Assert.Equal("adafactor", config.Training.Optimizer);
    }
}
