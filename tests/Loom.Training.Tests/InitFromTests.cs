using Loom.Models;
using Loom.Models.T5;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class InitFromTests
{
    private static Trainer NewTrainer(RunConfig config, string runDir) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training), runDir, CPU);

    private static RunConfig WithInitFrom(RunConfig config, string path, long seed) =>
        config with { Training = config.Training with { InitFrom = path, Seed = seed } };

    [Fact]
    public void InitFromCopiesTheWeightsOfAnotherRunsNewestCheckpointAndStartsAfresh()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        string pretrain = dir.File("pretrain");
        using (var trainer = NewTrainer(config, pretrain)) trainer.Run();
        string checkpoint = TrainingCheckpoint.Resolve(pretrain);

        using var fine = NewTrainer(WithInitFrom(config, pretrain, seed: 99), dir.File("finetune"));
        Assert.Equal(checkpoint, fine.InitialisedFrom);
        Assert.Equal(0, fine.State.Step);
        using var scope = NewDisposeScope();
        var (saved, _) = ModelCheckpoint.Load(checkpoint, CPU);
        using (saved)
        {
            var expected = saved.state_dict();
            foreach (var (name, tensor) in fine.Model.state_dict())
                Assert.True(tensor.equal(expected[name]).all().item<bool>(), name);
        }
        // Without init_from the same seed gives other weights: the copy is not a coincidence.
        using var fresh = NewTrainer(config with { Training = config.Training with { Seed = 99 } }, dir.File("fresh"));
        Assert.Null(fresh.InitialisedFrom);
        Assert.False(fresh.Model.state_dict().First().Value.equal(fine.Model.state_dict().First().Value).all().item<bool>());
        fine.Run(); // and it trains
        Assert.Equal(2, fine.State.Step);
    }

    [Fact]
    public void InitFromRefusesAnotherArchitectureAnotherShapeOrNoCheckpoint()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        using var scope = NewDisposeScope();

        string t5 = dir.File("t5");
        Directory.CreateDirectory(t5);
        var t5Options = new T5Options
        {
            VocabSize = 258, ModelDim = 32, NumEncoderLayers = 1, NumDecoderLayers = 1, NumHeads = 4, HeadDim = 8, MlpDim = 48,
            RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16, MaxSequenceLength = 64,
        };
        using (var model = t5Options.Build(generator: new Generator(1))) ModelCheckpoint.Save(t5, model, new ModelManifest { Model = t5Options });
        var family = Assert.Throws<InvalidDataException>(() => NewTrainer(WithInitFrom(config, t5, 5), dir.File("a")));
        Assert.Equal($"training.init_from = {t5} holds a t5 model but this run builds a decoder_lm one: initialise from a decoder_lm checkpoint, or set model.architecture = t5", family.Message);

        string wider = dir.File("wider");
        Directory.CreateDirectory(wider);
        var widerOptions = TrainerFixtures.TinyModel with { MlpDim = 96 };
        using (var model = widerOptions.Build(generator: new Generator(1))) ModelCheckpoint.Save(wider, model, new ModelManifest { Model = widerOptions });
        var shape = Assert.Throws<InvalidDataException>(() => NewTrainer(WithInitFrom(config, wider, 5), dir.File("b")));
        Assert.StartsWith($"training.init_from = {wider}: its model does not fit this run's", shape.Message);
        Assert.Contains("shape", shape.Message);
        Assert.DoesNotContain('\n', shape.Message);

        var missing = Assert.Throws<InvalidDataException>(() => NewTrainer(WithInitFrom(config, dir.File("nothing"), 5), dir.File("c")));
        Assert.StartsWith($"training.init_from = {dir.File("nothing")}: no checkpoint found", missing.Message);
    }
}
