using Loom.Core;
using Loom.Data;
using Loom.Training.Metrics;
using Loom.Training.Optimization;
using Loom.Training.Recovery;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class SpikeRecoveryTests
{
    private static readonly string Configs = Path.Combine(AppContext.BaseDirectory, "configs");

    /// <summary>The fixture's run (gradient accumulation 2, a log line every 2 updates) with recovery on and a checkpoint every 4 updates.</summary>
    private static RunConfig Config(string data, long steps, bool recovery = true, int maxRollbacks = 3)
    {
        var config = TrainerFixtures.Config(data, steps);
        return config with
        {
            Training = config.Training with
            {
                CheckpointEvery = 4,
                KeepCheckpoints = 3,
                SpikeRecovery = new SpikeRecoveryOptions { Enabled = recovery, Factor = 3, Window = 4, SkipBatches = 3, MaxRollbacks = maxRollbacks },
            },
        };
    }

    private static Trainer NewTrainer(RunConfig config, string runDir, Func<ITrainingBatches, ITrainingBatches>? batches = null, ILearningRateSchedule? schedule = null)
    {
        var data = TrainingDataLoader.Load(config.Data, config.Training);
        if (batches is not null) data = data with { Train = batches(data.Train) };
        return new Trainer(config, data, runDir, CPU, schedule: schedule);
    }

    private static ILearningRateSchedule ScheduleOf(RunConfig config)
    {
        var t = config.Training;
        return LearningRateSchedules.Create(t.Schedule, t.LearningRate, t.WarmupSteps, t.Steps, t.MinLearningRate);
    }

    private static List<MetricEvent> Rollbacks(string runDir) =>
        [.. JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Where(e => e.Event == MetricEvent.SpikeRollbackEvent)];

    private static void AssertFinite(Trainer trainer)
    {
        foreach (var (name, p) in trainer.Model.named_parameters())
            Assert.True(p.isfinite().all().item<bool>(), $"parameter {name} is not finite");
    }

    [Fact]
    public void ANaNInOneBatchRollsBackToTheLastCheckpointAndSkipsTheBadBatches()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("run");
        var config = Config(TrainerFixtures.WriteCorpus(dir), steps: 16);
        // Micro-batch 11 is the second half of update 6 (updates consume micro-batches 2s-2 and 2s-1).
        NaNBatches? corrupt = null;
        var observer = new RollbackRecorder();
        using var trainer = NewTrainer(config, runDir, inner => corrupt = new NaNBatches(inner, 11));
        trainer.Observer = observer;

        var result = trainer.Run();

        var rollback = Assert.Single(Rollbacks(runDir));
        Assert.Equal(6, rollback.Step);
        Assert.False(double.IsFinite(rollback.Loss));
        Assert.Equal(4, rollback.RolledBackTo);                 // the checkpoint of step 4, written before the spike
        Assert.Equal(12 - 8 + 3 * 2, rollback.SkippedMicroBatches); // micro-batches 8..11 (through the spike) + 3 batches of 2
        Assert.Contains("non-finite loss", rollback.Reason, StringComparison.Ordinal);
        var seen = Assert.Single(observer.Rollbacks);
        Assert.Equal(4, seen.RestoredStep);

        Assert.Equal(1, corrupt!.Requests(11)); // the bad batch is never drawn again
        Assert.Equal(16, result.Step);
        Assert.Equal(1, trainer.State.Rollbacks);
        Assert.Equal(18 + (16 - 4) * 2, trainer.State.MicroBatchesConsumed);
        var train = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit && e.Event is null).ToList();
        Assert.True(double.IsFinite(train[^1].Loss), $"final training loss {train[^1].Loss}");
        Assert.True(result.ValidationLoss is double v && double.IsFinite(v));
        AssertFinite(trainer);
    }

    [Fact]
    public void ALearningRateSpikeRollsBackAndTheRunFinishesWithAFiniteLoss()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("run");
        var config = Config(TrainerFixtures.WriteCorpus(dir), steps: 16);
        // The learning rate is 10⁴ times too large for updates 9 and 10 (steps 8 and 9), the first time only:
        // a transient fault, as the spikes PaLM met did not recur once their data was skipped.
        var schedule = new LearningRateSpike(ScheduleOf(config), from: 8, to: 10, factor: 1e4, onlyOnce: true);
        using var trainer = NewTrainer(config, runDir, schedule: schedule);

        var result = trainer.Run();

        var rollback = Assert.Single(Rollbacks(runDir));
        Assert.InRange(rollback.Step, 9, 10);
        Assert.Equal(8, rollback.RolledBackTo);
        Assert.True(rollback.SkippedMicroBatches >= 2 * 3, $"skipped {rollback.SkippedMicroBatches}");
        Assert.Equal(16, result.Step);
        Assert.Equal(1, trainer.State.Rollbacks);
        using var clean = NewTrainer(Config(dir.File("corpus"), steps: 16), dir.File("clean"));
        double cleanLoss = clean.Run().ValidationLoss!.Value;
        // Recovered: as good as the run that never spiked, give or take the different batches it saw.
        Assert.True(result.ValidationLoss is double v && double.IsFinite(v) && Math.Abs(v - cleanLoss) < 0.2, $"validation loss {result.ValidationLoss}, {cleanLoss} without the spike");
        AssertFinite(trainer);
    }

    [Fact]
    public void ASpikeThatKeepsComingBackStopsTrainingWithAClearErrorAfterMaxRollbacks()
    {
        using var dir = new TempDirectory();
        string runDir = dir.File("run");
        var config = Config(TrainerFixtures.WriteCorpus(dir), steps: 16, maxRollbacks: 2);
        // Tied to the step, the spike comes back after every rollback: skipping data cannot help.
        var schedule = new LearningRateSpike(ScheduleOf(config), from: 8, to: 10, factor: 1e4, onlyOnce: false);
        using var trainer = NewTrainer(config, runDir, schedule: schedule);

        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());

        Assert.Contains("after 2 rollbacks (training.spike_recovery.max_rollbacks = 2)", e.Message, StringComparison.Ordinal);
        Assert.Contains("resume from", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(3, Rollbacks(runDir).Count); // two rollbacks and the spike that gave up
        Assert.Equal(2, trainer.State.Rollbacks);
    }

    [Fact]
    public void WithoutASpikeARunWithRecoveryIsBitIdenticalToOneWithout()
    {
        using var dir = new TempDirectory();
        string data = TrainerFixtures.WriteCorpus(dir);
        using var off = NewTrainer(Config(data, steps: 12, recovery: false), dir.File("off"));
        using var on = NewTrainer(Config(data, steps: 12), dir.File("on"));
        off.Run();
        on.Run();

        Assert.Empty(Rollbacks(dir.File("on")));
        Assert.Equal(off.State with { ElapsedSeconds = 0 }, on.State with { ElapsedSeconds = 0 });
        var (a, b) = (off.Model.state_dict(), on.Model.state_dict());
        foreach (var key in a.Keys) Assert.True(a[key].eq(b[key]).all().item<bool>(), $"weight {key} differs");
        var (sa, sb) = (off.Optimizer.StateTensors(), on.Optimizer.StateTensors());
        foreach (var key in sa.Keys) Assert.True(sa[key].eq(sb[key]).all().item<bool>(), $"optimizer state {key} differs");
        static double[] Losses(string run) => [.. JsonlMetricSink.ReadAll(Path.Combine(run, "metrics.jsonl")).Select(e => e.Loss)];
        Assert.Equal(Losses(dir.File("off")), Losses(dir.File("on")));
    }

    [Fact]
    public void TheMonitorFlagsOnlyTheFirstBadUpdateAndTheRatioTestWaitsForAFullWindow()
    {
        using var monitor = new LossSpikeMonitor(new SpikeRecoveryOptions { Enabled = true, Factor = 2, Window = 3 }, CPU);
        using var sum = zeros(1);
        using var norm = ones(1);
        void Step(long step, float loss)
        {
            monitor.BeginStep(sum);
            sum.add_(loss);
            monitor.Observe(step, sum, norm);
        }
        Step(1, 9f); // a high first loss is no spike: there is no window yet
        Step(2, 3f);
        Step(3, 3f);
        Assert.Null(monitor.Detect());
        Step(4, 6.5f); // > 2 × median(9, 3, 3)
        Step(5, 1f / 0);
        var spike = monitor.Detect();
        Assert.NotNull(spike);
        Assert.Equal(4, spike.Step);
        Assert.Equal(6.5, spike.Loss, 5);
        Assert.Equal(3, spike.Median!.Value, 5);
        Assert.Contains("> 2 × the recent median 3", spike.Reason, StringComparison.Ordinal);

        monitor.Reset();
        sum.zero_();
        Assert.Null(monitor.Detect());
        Step(1, 100f);
        Assert.Null(monitor.Detect());
        norm.fill_(float.NaN);
        Step(2, 1f);
        Assert.Contains("non-finite gradient norm", monitor.Detect()!.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("training.spike_recovery.factor=1", "training.spike_recovery.factor = 1 must be a number greater than 1")]
    [InlineData("training.spike_recovery.window=0", "training.spike_recovery.window = 0 must be at least 1")]
    [InlineData("training.spike_recovery.skip_batches=-1", "training.spike_recovery.skip_batches = -1 must be 0 or more")]
    [InlineData("training.spike_recovery.max_rollbacks=0", "training.spike_recovery.max_rollbacks = 0 must be at least 1")]
    [InlineData("training.spike_recovery.windw=3", "unknown key 'training.spike_recovery.windw'")]
    public void BadSpikeRecoveryOptionsAreRefusedWithTheKeyAndTheRule(string assignment, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => RunConfigLoader.Load(null, "tiny", ["training.spike_recovery.enabled=true", assignment], Configs));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SpikeRecoveryOptionsLoadFromConfig()
    {
        var config = RunConfigLoader.Load(null, "tiny", ["training.spike_recovery={\"enabled\": true, \"factor\": 2.5, \"window\": 20, \"skip_batches\": 200, \"max_rollbacks\": 5}"], Configs);
        Assert.Equal(new SpikeRecoveryOptions { Enabled = true, Factor = 2.5, Window = 20, SkipBatches = 200, MaxRollbacks = 5 }, config.Training.SpikeRecovery);
        Assert.False(RunConfigLoader.Load(null, "tiny", [], Configs).Training.SpikeRecovery.Enabled);
    }

    /// <summary>Training batches whose micro-batch <c>bad</c> carries NaN loss weights (a corrupt record).</summary>
    private sealed class NaNBatches(ITrainingBatches inner, long bad) : ITrainingBatches
    {
        private readonly Dictionary<long, int> requests = [];

        public int BatchSize => inner.BatchSize;
        public int SequenceLength => inner.SequenceLength;
        public int Requests(long step) => requests.GetValueOrDefault(step);

        public FeatureBatch GetBatch(long step)
        {
            requests[step] = Requests(step) + 1;
            var batch = inner.GetBatch(step);
            if (step != bad) return batch;
            var features = batch.Names.ToDictionary(n => n, n => batch[n], StringComparer.Ordinal);
            features[FeatureNames.DecoderLossWeights] = full(batch.Targets.shape, float.NaN, float32);
            return new FeatureBatch(features);
        }
    }

    /// <summary>A schedule whose rate is <c>factor</c> times too large for steps [from, to): each time, or the first time only.</summary>
    private sealed class LearningRateSpike(ILearningRateSchedule inner, long from, long to, double factor, bool onlyOnce) : ILearningRateSchedule
    {
        private readonly HashSet<long> spiked = [];

        public double At(long step) =>
            step >= from && step < to && (!onlyOnce || spiked.Add(step)) ? inner.At(step) * factor : inner.At(step);
    }

    private sealed class RollbackRecorder : ITrainingObserver
    {
        public List<SpikeRollback> Rollbacks { get; } = [];
        public void OnStart(long startStep, long totalSteps) { }
        public void OnStep(long step) { }
        public void OnTrainMetrics(MetricEvent metrics) { }
        public void OnValidationMetrics(MetricEvent metrics) { }
        public void OnCheckpoint(string directory) { }
        public void OnRollback(SpikeRollback rollback) => Rollbacks.Add(rollback);
    }
}
