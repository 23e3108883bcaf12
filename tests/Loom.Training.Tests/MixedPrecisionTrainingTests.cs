using Loom.Core;
using Loom.Inference;
using Loom.Models;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class MixedPrecisionTrainingTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    private static RunConfig Config(string data, long steps, string precision)
    {
        var config = TrainerFixtures.Config(data, steps);
        return config with { Training = config.Training with { Precision = precision, LogEvery = 1 } };
    }

    private static Trainer NewTrainer(RunConfig config, string runDir) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training), runDir, CPU);

    [Fact]
    public void Bf16TrainingKeepsFloat32MasterWeightsAndOptimizerStateAndLowersTheLoss()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("bf16");
        using var trainer = NewTrainer(Config(TrainerFixtures.WriteCorpus(dir), 24, "bf16"), runDir);
        Assert.Equal(ComputePrecision.BFloat16, trainer.Model.Precision);

        var result = trainer.Run();

        foreach (var (name, p) in trainer.Model.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.isfinite().all().item<bool>(), $"{name} is not finite");
        }
        var state = trainer.Optimizer.StateTensors();
        Assert.NotEmpty(state);
        foreach (var (name, t) in state) Assert.True(t.dtype is ScalarType.Float32 or ScalarType.Int64, $"optimizer state {name} is {t.dtype}");
        var train = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit).Select(e => e.Loss).ToList();
        Assert.True(train.Skip(20).Average() < train.Take(4).Average() - 1, $"loss went from {train[0]} to {train[^1]}");
        Assert.True(result.ValidationLoss is double v && double.IsFinite(v) && v < train[0], $"validation loss {result.ValidationLoss}");
    }

    [Fact]
    public void ACheckpointOfABf16RunLoadsAndGeneratesInFloat32()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("bf16");
        using var trainer = NewTrainer(Config(TrainerFixtures.WriteCorpus(dir), 6, "bf16"), runDir);
        var result = trainer.Run();

        var (loaded, _) = ModelCheckpoint.Load(result.Checkpoint!, CPU);
        using var model = loaded;
        model.eval();
        Assert.Equal(ComputePrecision.Float32, model.Precision);
        foreach (var (_, p) in model.named_parameters()) Assert.Equal(ScalarType.Float32, p.dtype);

        // The checkpoint's model computes exactly what the trained model computes in float32.
        trainer.Model.eval();
        trainer.Model.UsePrecision(ComputePrecision.Float32);
        using (no_grad())
        {
            var tokens = tensor(new long[] { 84, 104, 101, 32, 113, 117, 105 }).unsqueeze(0); // (1, T)
            var logits = model.Forward(tokens, null);
            Assert.Equal(ScalarType.Float32, logits.dtype);
            Assert.True(logits.eq(trainer.Model.Forward(tokens, null)).all().item<bool>());
        }
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = 12 };
        int[] prompt = [84, 104, 101, 32];
        var cached = new TextGenerator(model, eosId: 1).Generate(prompt, sampling).ToList();
        var uncached = new TextGenerator(model, eosId: 1).GenerateWithoutCache(prompt, sampling).ToList();
        Assert.Equal(uncached, cached);
        Assert.NotEmpty(cached);
    }

    [Fact]
    public void Fp16TrainingScalesTheLossKeepsFloat32MasterWeightsAndLowersTheLoss()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("fp16");
        using var trainer = NewTrainer(Config(TrainerFixtures.WriteCorpus(dir), 24, "fp16"), runDir);
        Assert.Equal(ComputePrecision.Float16, trainer.Model.Precision);

        var result = trainer.Run();

        foreach (var (name, p) in trainer.Model.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.isfinite().all().item<bool>(), $"{name} is not finite");
        }
        var train = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit).ToList();
        Assert.All(train, e => Assert.NotNull(e.LossScale));
        Assert.True(train.Skip(20).Average(e => e.Loss) < train.Take(4).Average(e => e.Loss) - 1, $"loss went from {train[0].Loss} to {train[^1].Loss}");
        Assert.True(trainer.State.SkippedUpdates < 4, $"{trainer.State.SkippedUpdates} of 24 updates skipped at the default scale");
        Assert.True(result.ValidationLoss is double v && double.IsFinite(v), $"validation loss {result.ValidationLoss}");
    }

    [Fact]
    public void AnOverflowingLossScaleSkipsUpdatesAndHalvesUntilTheGradientsAreFinite()
    {
        using var dir = new TempDirectory();
        string corpus = TrainerFixtures.WriteCorpus(dir);
        var config = Config(corpus, 1, "fp16");
        config = config with { Training = config.Training with { LossScale = Math.Pow(2, 30), LossScaleGrowthInterval = 1000 } };

        // One update at 2^30: float16 gradients overflow, so the update is skipped and the weights stay the seed's.
        using (var first = NewTrainer(config, dir.File("one")))
        {
            var before = first.Model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
            first.Run();
            Assert.Equal(1, first.State.SkippedUpdates);
            Assert.Equal(Math.Pow(2, 29), first.State.LossScale);
            foreach (var (name, p) in first.Model.state_dict()) Assert.True(before[name].equal(p).all().item<bool>(), $"{name} changed in a skipped update");
        }

        // Over 40 updates the scale halves until the gradients fit, then the model trains.
        using var trainer = NewTrainer(config with { Training = config.Training with { Steps = 40 } }, dir.File("many"));
        trainer.Run();
        long skipped = trainer.State.SkippedUpdates;
        Assert.InRange(skipped, 2, 39);
        Assert.Equal(Math.Pow(2, 30 - skipped), trainer.State.LossScale); // halved once per skip, never grown (interval 1000)
        var train = JsonlMetricSink.ReadAll(Path.Combine(dir.File("many"), "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit).ToList();
        Assert.Equal(skipped, train[^1].SkippedUpdates);
        Assert.All(trainer.Model.parameters(), p => Assert.True(p.isfinite().all().item<bool>()));
    }

    [Theory]
    [InlineData("fp8")]
    [InlineData("BF16")]
    public void AnUnknownPrecisionIsRefusedWithTheChoices(string precision)
    {
        var e = Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "tiny", [$"training.precision={precision}"], Configs));
        Assert.Contains($"training.precision = '{precision}' is unknown: use \"fp32\"", e.Message, StringComparison.Ordinal);
        Assert.Equal("bf16", RunConfigLoader.Load(null, "tiny", ["training.precision=bf16"], Configs).Training.Precision);
    }
}
