using Loom.Training.Tests.Metrics;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class AustenTrainingTests
{
    [Fact]
    public void TrainingOnAustenLowersTheHeldOutLoss()
    {
        using var dir = new TempDirectory();
        var config = new RunConfig
        {
            ModelPreset = "test",
            Model = TrainerFixtures.TinyModel with { ModelDim = 64, MlpDim = 128, MaxSequenceLength = 64 },
            Device = "cpu",
            Data = new DataOptions { Corpus = "austen", SequenceLength = 64 },
            Training = new TrainerOptions { Steps = 80, BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 10, LogEvery = 20, EvalEvery = 0, EvalBatches = 4, Seed = 1 },
        }.Validate();
        var data = TrainingDataLoader.Load(config.Data, config.Training);
        Assert.StartsWith("austen", data.Description);
        using var trainer = new Trainer(config, data, dir.File("run"), CPU);
        double before = trainer.Evaluate().Loss;
        Assert.InRange(before, 4.0, 8.0); // untrained: near ln(258) = 5.55, give or take the random init
        var result = trainer.Run();
        Assert.NotNull(result.ValidationLoss);
        Assert.True(result.ValidationLoss < 3.2, $"held-out loss {result.ValidationLoss} after 80 steps (was {before})");
        Assert.True(result.ValidationLoss < before - 1.5);
    }
}
