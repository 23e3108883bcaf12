using Loom.Models;
using Loom.Models.Adapters;
using Loom.Models.Interop;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>Training LoRA adapters over a frozen base: only the adapters change, checkpoints hold them alone, and a run resumes exactly.</summary>
public sealed class LoraTrainingTests
{
    private static Trainer NewTrainer(RunConfig config, string runDir) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training), runDir, CPU);

    private static RunConfig Lora(RunConfig config, string initFrom, long steps) => config with
    {
        Training = config.Training with { InitFrom = initFrom, Steps = steps, CheckpointEvery = 2, WeightDecay = 1.0 },
        Lora = new LoraOptions { Rank = 2, TargetModules = ["wq", "wv", "up"] },
    };

    [Fact]
    public void ALoraRunTrainsOnlyTheAdaptersAndResumesToTheSameAdapters()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        string pretrain = dir.File("pretrain");
        using (var trainer = NewTrainer(config, pretrain)) trainer.Run();
        string baseCheckpoint = TrainingCheckpoint.Resolve(pretrain);
        using var scope = NewDisposeScope();

        using var straight = NewTrainer(Lora(config, pretrain, 4), dir.File("straight"));
        Assert.True(straight.TrainableParameterCount < 0.1 * straight.TotalParameterCount);
        Assert.Equal(straight.Model.Lora!.ParameterCount, straight.TrainableParameterCount);
        straight.Run();
        var (saved, _) = ModelCheckpoint.Load(baseCheckpoint, CPU);
        using (saved)
        {
            var expected = saved.state_dict();
            foreach (var (name, tensor) in straight.Model.state_dict()) // weight decay and updates never touch the frozen base
                Assert.True(tensor.equal(expected[name]).all().item<bool>(), name);
        }
        var last = TrainingCheckpoint.Resolve(dir.File("straight"));
        Assert.False(File.Exists(Path.Combine(last, ModelCheckpoint.WeightsFile)));
        Assert.True(LoraAdapters.IsAdapterFolder(last));
        Assert.Equal(Path.GetFullPath(baseCheckpoint), ModelCheckpoint.ReadManifest(last).BaseModel);

        using (var first = NewTrainer(Lora(config, pretrain, 2), dir.File("resumed"))) first.Run();
        using var resumed = NewTrainer(Lora(config, pretrain, 4), dir.File("resumed"));
        resumed.Resume(TrainingCheckpoint.Resolve(dir.File("resumed")));
        Assert.Equal(2, resumed.State.Step);
        resumed.Run();
        var expectedAdapters = straight.Model.Lora.NamedParameters().ToDictionary(p => p.Name, p => p.Param);
        foreach (var (name, adapter) in resumed.Model.Lora!.NamedParameters())
            Assert.True(adapter.equal(expectedAdapters[name]).all().item<bool>(), name);
        Assert.False(expectedAdapters["blocks.0.attn.wq.lora_B"].eq(0).all().item<bool>(), "B should have trained away from zero");
    }

    [Fact]
    public void LoraNeedsABaseAndAnAdapterCheckpointIsNotOne()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        var noBase = Assert.Throws<ArgumentException>(() => (config with { Lora = new LoraOptions() }).Validate());
        Assert.Contains("lora.* is set but training.init_from is not", noBase.Message);

        string pretrain = dir.File("pretrain");
        using (var trainer = NewTrainer(config, pretrain)) trainer.Run();
        using (var lora = NewTrainer(Lora(config, pretrain, 2), dir.File("lora"))) lora.Run();
        var twice = Assert.Throws<ArgumentException>(() => NewTrainer(Lora(config, dir.File("lora"), 2), dir.File("again")));
        Assert.Contains("is itself a LoRA checkpoint: merge it first (loom export merged", twice.Message);
    }

    [Fact]
    public void InitFromAHuggingFaceFolderCopiesItsWeights()
    {
        using var dir = new TempDirectory();
        var llama = TrainerFixtures.TinyModel with { ParallelBlock = false, ScaleSharedLogits = false };
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2) with { Model = llama };
        using var scope = NewDisposeScope();
        using var source = llama.Build(generator: new Generator(7));
        HuggingFaceModels.Export(source, dir.File("hf"));

        using var trainer = NewTrainer(Lora(config, "hf:" + dir.File("hf"), 2), dir.File("run"));
        Assert.Equal("hf:" + dir.File("hf"), trainer.InitialisedFrom);
        var expected = source.state_dict();
        foreach (var (name, tensor) in trainer.Model.state_dict())
            Assert.True(tensor.equal(expected[name]).all().item<bool>(), name);
    }
}
