using Loom.Core;
using Loom.Training.Metrics;
using Loom.Training.Tests.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class TrainerTests
{
    private static Trainer NewTrainer(RunConfig config, string runDir) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training), runDir, CPU);

    [Theory]
    [InlineData("adafactor")]
    [InlineData("adamw")]
    public void StraightRunEqualsRunResumedFromACheckpoint(string optimizer)
    {
        using var dir = new TempDirectory();
        string data = TrainerFixtures.WriteCorpus(dir);
        const int n = 4;

        using var straight = NewTrainer(TrainerFixtures.Config(data, 2 * n, optimizer), dir.File("straight"));
        straight.Run();

        using (var first = NewTrainer(TrainerFixtures.Config(data, 2 * n, optimizer) with { }, dir.File("resumed")))
        {
            // Stop after n steps the way Ctrl-C does: cancellation writes a checkpoint and returns.
            using var cts = new CancellationTokenSource();
            first.Observer = new CancelAt(n, cts);
            var partial = first.Run(cts.Token);
            Assert.True(partial.Interrupted);
            Assert.Equal(n, partial.Step);
        }
        using var resumed = NewTrainer(TrainerFixtures.Config(data, 2 * n, optimizer), dir.File("resumed"));
        resumed.Resume(TrainingCheckpoint.Resolve(dir.File("resumed")));
        Assert.Equal(n, resumed.State.Step);
        resumed.Run();

        Assert.Equal(straight.State with { ElapsedSeconds = 0 }, resumed.State with { ElapsedSeconds = 0 });
        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        Assert.Equal(a.Keys, b.Keys);
        foreach (var key in a.Keys) Assert.True(a[key].eq(b[key]).all().item<bool>(), $"weight {key} differs");
        var sa = straight.Optimizer.StateTensors();
        var sb = resumed.Optimizer.StateTensors();
        Assert.Equal(sa.Keys, sb.Keys);
        foreach (var key in sa.Keys) Assert.True(sa[key].eq(sb[key]).all().item<bool>(), $"optimizer state {key} differs");
        Assert.Equal(straight.Optimizer.StepCount, resumed.Optimizer.StepCount);
    }

    [Fact]
    public void InitialWeightsDependOnlyOnTheSeedNotOnTorchsGlobalGenerator()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        using var a = NewTrainer(config, dir.File("a"));
        // Someone else drawing from the global generator moves its state (without reseeding it, which
        // would disturb tests running in parallel); the next trainer's weights must not notice.
        randn(100).Dispose();
        using var b = NewTrainer(config, dir.File("b"));
        using var c = NewTrainer(config with { Training = config.Training with { Seed = 6 } }, dir.File("c"));
        var (sa, sb, sc) = (a.Model.state_dict(), b.Model.state_dict(), c.Model.state_dict());
        foreach (var key in sa.Keys) Assert.True(sa[key].eq(sb[key]).all().item<bool>(), key);
        Assert.False(sa["embed"].eq(sc["embed"]).all().item<bool>());
    }

    [Fact]
    public void LiveTensorCountDoesNotGrowAcrossSteps()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 30);
        config = config with { Training = config.Training with { EvalEvery = 5, CheckpointEvery = 5 } }; // every kind of step
        using var trainer = NewTrainer(config, dir.File("run"));
        var probe = new LiveTensorProbe(11, 26);
        trainer.Observer = probe;
        trainer.Run();
        Assert.Equal(2, probe.Counts.Count);
        Assert.Equal(probe.Counts[11], probe.Counts[26]);
    }

    [Fact]
    public void RunWritesMetricsPlotTensorBoardAndKeepsTheNewestCheckpoints()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 12);
        config = config with { Training = config.Training with { CheckpointEvery = 3, EvalEvery = 4 } };
        string run = dir.File("run");
        using (var trainer = NewTrainer(config, run)) trainer.Run();

        var events = JsonlMetricSink.ReadAll(Path.Combine(run, "metrics.jsonl"));
        var train = events.Where(e => e.Split == "train").ToList();
        Assert.Equal(new long[] { 2, 4, 6, 8, 10, 12 }, train.Select(e => e.Step));
        Assert.All(train, e => Assert.True(e.LearningRate > 0 && e.GradNorm > 0 && e.TokensPerSecond > 0 && e.Loss > 0));
        Assert.Equal(new long[] { 4, 8, 12 }, events.Where(e => e.Split == "validation").Select(e => e.Step));
        Assert.All(events.Where(e => e.Split == "validation"), e => Assert.Equal(Math.Exp(e.Loss), e.Perplexity!.Value, 6));
        Assert.True(File.Exists(Path.Combine(run, "loss.png")));
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(run, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories));

        var checkpoints = TrainingCheckpoint.List(run).Select(Path.GetFileName).ToList();
        Assert.Equal(new[] { "step_00000009", "step_00000012" }, checkpoints);
        Assert.Empty(Directory.GetDirectories(TrainingCheckpoint.Root(run), "*.tmp*"));
        // The weights are standard safetensors: every tensor under its module path.
        var weights = SafeTensors.Load(Path.Combine(run, "checkpoints", "step_00000012", "model.safetensors"));
        Assert.Contains("blocks.0.attn.wq.weight", weights.Keys);
    }

    [Fact]
    public void CorruptCheckpointIsRefusedWithAClearMessage()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), 2);
        string run = dir.File("run");
        using (var trainer = NewTrainer(config, run)) trainer.Run();
        string checkpoint = TrainingCheckpoint.Resolve(run);
        string weights = Path.Combine(checkpoint, "model.safetensors");
        File.WriteAllBytes(weights, File.ReadAllBytes(weights)[..100]); // truncated

        using var fresh = NewTrainer(config, dir.File("other"));
        var e = Assert.Throws<InvalidDataException>(() => fresh.Resume(checkpoint));
        Assert.Contains("model.safetensors", e.Message);
    }

    private sealed class CancelAt(long step, CancellationTokenSource cts) : ITrainingObserver
    {
        public void OnStart(long startStep, long totalSteps) { }
        public void OnStep(long s) { if (s == step) cts.Cancel(); }
        public void OnTrainMetrics(MetricEvent metrics) { }
        public void OnValidationMetrics(MetricEvent metrics) { }
        public void OnCheckpoint(string directory) { }
    }

    private sealed class LiveTensorProbe(params long[] steps) : ITrainingObserver
    {
        public Dictionary<long, long> Counts { get; } = new();
        public void OnStart(long startStep, long totalSteps) { }
        public void OnStep(long s) { if (steps.Contains(s)) Counts[s] = DisposeScopeManager.Statistics.ThreadTotalLiveCount; }
        public void OnTrainMetrics(MetricEvent metrics) { }
        public void OnValidationMetrics(MetricEvent metrics) { }
        public void OnCheckpoint(string directory) { }
    }
}
