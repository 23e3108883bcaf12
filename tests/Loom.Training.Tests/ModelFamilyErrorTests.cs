using Loom.Core;
using Loom.Models;
using Loom.Models.T5;
using Loom.Training.Optimization;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>Error paths where a config or a checkpoint names the wrong model family or impossible options.</summary>
public class ModelFamilyErrorTests
{
    private static ConfigException Refused(params string[] sets) =>
        Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "tiny", sets.SelectMany(s => new[] { s }), RepoConfigs));

    private static string RepoConfigs => Path.Combine(RepositoryRoot.Find(), "configs");

    [Fact]
    public void UnknownArchitectureNamesTheKnownOnes()
    {
        var e = Refused("model.architecture=gpt9");
        Assert.Contains("gpt9", e.Message);
        Assert.Contains("decoder_lm", e.Message);
        Assert.Contains("t5", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void T5OptionOnADecoderPresetSaysItIsAT5Option()
    {
        var e = Refused("model.relative_attention_num_buckets=16");
        Assert.Contains("relative_attention_num_buckets", e.Message);
        Assert.Contains("t5", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void MoeTopKAboveTheExpertCountIsRefused()
    {
        var e = Refused("model.moe.num_experts=2", "model.moe.top_k=3");
        Assert.Contains("top_k", e.Message);
        Assert.Contains("3", e.Message);
        Assert.Contains("2", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void RestoringAT5CheckpointIntoADecoderRunSaysWhichFamilies()
    {
        using var dir = new TempDirectory();
        using var scope = NewDisposeScope();
        var t5Options = new T5Options
        {
            VocabSize = 64, ModelDim = 32, NumEncoderLayers = 1, NumDecoderLayers = 1, NumHeads = 4, HeadDim = 8, MlpDim = 48,
            RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16, MaxSequenceLength = 32,
        };
        using (var t5 = t5Options.Build(generator: new Generator(1))) ModelCheckpoint.Save(dir.Path, t5, new ModelManifest { Model = t5Options });

        using var decoder = TinyModels.Decoder().Build(generator: new Generator(2));
        var optimizer = Optimizers.Create("adamw", decoder.named_parameters(), new AdamWOptions(), AdafactorOptions.PaLM);
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Restore(dir.Path, decoder, optimizer, new Generator(3)));
        Assert.Contains("holds a t5 model but this run builds a decoder_lm one", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        // Loading it for a caller that needs a decoder says the same kind of thing.
        var load = Assert.Throws<InvalidDataException>(() => ModelCheckpoint.Load(dir.Path, expectedArchitecture: ModelArchitectures.DecoderLm));
        Assert.Contains("holds a t5 model, not a decoder_lm one", load.Message);
        // And its weights refuse to load into a decoder.
        var weights = Assert.Throws<InvalidDataException>(() => ModelCheckpoint.LoadWeights(decoder, Path.Combine(dir.Path, ModelCheckpoint.WeightsFile)));
        Assert.Contains("t5 model, which cannot load into a decoder_lm model", weights.Message);
    }
}
