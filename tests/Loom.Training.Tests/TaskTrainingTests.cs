using Loom.Data;
using Loom.Data.Caching;
using Loom.Data.Evaluation;
using Loom.Data.Tasks;
using Loom.Training.Metrics;
using Loom.Training.Tests.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>Training on tasks and mixtures defined in C#: packed batches, resumption, per-task evaluation, the cache.</summary>
public class TaskTrainingTests
{
    /// <summary>An in-memory source with train and validation splits.</summary>
    private sealed class MemorySource(string name, IReadOnlyList<Example> train, IReadOnlyList<Example> validation) : IDataSource
    {
        public IReadOnlyList<string> Splits { get; } = ["train", "validation"];
        public string Fingerprint => $"memory:{name}:{train.Count}:{validation.Count}";
        public IEnumerable<Example> Read(string split) => split == "train" ? train : validation;
    }

    private static readonly ByteVocabulary Bytes = new();

    /// <summary>Sums as text ("12+7=" -> "19"), scored by exact match: a task with inputs, targets and a metric.</summary>
    private static DataTask Sums()
    {
        Example Sum(int a, int b) => Example.FromTexts(("inputs", $"{a}+{b}="), ("targets", $"{a + b}"));
        var features = new Dictionary<string, OutputFeature> { ["inputs"] = new(Bytes, AddEos: false), ["targets"] = new(Bytes) };
        return new DataTask("sums", new MemorySource("sums", [.. Enumerable.Range(0, 60).Select(i => Sum(i % 10, i / 10))], [.. Enumerable.Range(0, 6).Select(i => Sum(i, i + 1))]),
            [ExamplePreprocessors.Tokenize], features, [new ExactMatch(normalize: false)]);
    }

    /// <summary>Words as language modelling: documents longer than a row, cut into pieces.</summary>
    private static DataTask Words()
    {
        var words = new[] { "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog" };
        Example Doc(int d) => Example.FromTexts(("text", string.Join(' ', Enumerable.Range(0, 30).Select(i => words[(i * (d + 1)) % words.Length]))));
        return new DataTask("words", new MemorySource("words", [.. Enumerable.Range(0, 8).Select(Doc)], [Doc(9), Doc(10)]),
            [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
            new Dictionary<string, OutputFeature> { ["targets"] = new(Bytes) });
    }

    private static TaskRegistry Registry() => new TaskRegistry()
        .Add(Sums()).Add(Words())
        .Add(new Mixture("mix", [new("sums", 1), new("words", 3)]))
        .Add(new Mixture("by_count", [new("sums"), new("words")], MixtureRateKind.Examples));

    private static RunConfig Config(long steps, string? mixture = "mix", string? task = null, long evalEvery = 0) =>
        TrainerFixtures.Config("unused", steps) with
        {
            Data = new DataOptions { Mixture = mixture, Task = task, SequenceLength = 32 },
            Training = TrainerFixtures.Config("unused", steps).Training with { EvalEvery = evalEvery },
        };

    private static Trainer NewTrainer(RunConfig config, string runDir, TaskRegistry? registry = null) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training, registry: registry ?? Registry()), runDir, CPU);

    [Fact]
    public void MixtureRunResumedAtAStepEqualsTheStraightRun()
    {
        using var dir = new TempDirectory();
        const int n = 3;
        using var straight = NewTrainer(Config(2 * n), dir.File("straight"));
        straight.Run();
        using (var first = NewTrainer(Config(2 * n), dir.File("resumed")))
        {
            using var cts = new CancellationTokenSource();
            first.Observer = new StopAt(n, cts);
            var partial = first.Run(cts.Token);
            Assert.True(partial.Interrupted);
            Assert.Equal(n, partial.Step);
        }
        using var resumed = NewTrainer(Config(2 * n), dir.File("resumed"));
        resumed.Resume(TrainingCheckpoint.Resolve(dir.File("resumed")));
        Assert.Equal(n, resumed.State.Step); // the resume picked up where the interrupted run stopped
        var rest = resumed.Run();
        Assert.False(rest.Interrupted);
        Assert.Equal(2 * n, rest.Step);
        Assert.Equal(straight.State with { ElapsedSeconds = 0 }, resumed.State with { ElapsedSeconds = 0 });
        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        foreach (var key in a.Keys) Assert.True(a[key].eq(b[key]).all().item<bool>(), $"weight {key} differs");
    }

    [Fact]
    public void MixtureBatchesArePackedAndDrawFromEveryTaskByRate()
    {
        var config = Config(1);
        var data = TrainingDataLoader.Load(config.Data, config.Training, registry: Registry());
        var batches = Assert.IsType<PackedTrainingBatches>(data.Train);
        Assert.Equal(["sums", "words"], batches.ComponentNames);
        var counts = new int[2];
        for (long k = 0; k < 200; k++)
            for (int b = 0; b < batches.BatchSize; b++) counts[batches.RowAt(k, b).Component]++;
        Assert.InRange(counts[0] / 800.0, 0.2, 0.3); // rate 1 of 4
        using var scope = NewDisposeScope();
        long step = Enumerable.Range(0, 100).First(k => batches.RowAt(k, 0).Component == 0); // row 0 holds sums
        using var batch = data.Train.GetBatch(step);
        Assert.True(batch.IsPacked);
        Assert.Equal([4L, 32L], batch.Inputs.shape);
        // Loss falls on targets only: a sums example has weight 0 on "12+7=" and 1 on "19" + EOS.
        var row = batch.LossWeights![0];
        Assert.True(row.sum().item<long>() < batch.SegmentIds![0].ne(0).sum().item<long>());
        Assert.True(row.sum().item<long>() > 0);
        Assert.Equal(["sums", "words"], data.ValidationTasks.Select(t => t.Name));
    }

    [Fact]
    public void RatesByExampleCountComeFromTheTrainingSplits()
    {
        var config = Config(1, mixture: "by_count");
        var data = TrainingDataLoader.Load(config.Data, config.Training, registry: Registry());
        // 60 sums examples against 8 words documents.
        Assert.Contains("sums 60 examples at rate 0.882", data.Description);
        Assert.Contains("words 8 examples at rate 0.118", data.Description);
    }

    [Fact]
    public void PeriodicEvaluationReportsEveryTaskWithItsMetrics()
    {
        using var dir = new TempDirectory();
        using var trainer = NewTrainer(Config(2, evalEvery: 2), dir.File("run"));
        trainer.Run();
        var events = JsonlMetricSink.ReadAll(Path.Combine(dir.File("run"), "metrics.jsonl"))
            .Where(e => e.Split == MetricEvent.ValidationSplit).ToList();
        var sums = Assert.Single(events, e => e.Task == "sums");
        Assert.True(sums.Metrics!.ContainsKey("exact_match"));
        Assert.Single(events, e => e.Task == "words");
        var overall = Assert.Single(events, e => e.Task is null);
        Assert.True(double.IsFinite(overall.Loss) && overall.Loss > 0);
    }

    [Fact]
    public void TaskWithInputsTrainsPackedAndLanguageModellingTaskAsAStream()
    {
        var packed = Config(1, mixture: null, task: "sums");
        Assert.IsType<PackedTrainingBatches>(TrainingDataLoader.Load(packed.Data, packed.Training, registry: Registry()).Train);
        var stream = Config(1, mixture: null, task: "words");
        var data = TrainingDataLoader.Load(stream.Data, stream.Training, registry: Registry());
        Assert.IsType<LmBatcher>(data.Train);
        Assert.NotNull(data.Validation);
    }

    [Fact]
    public void CachedMixtureGivesTheSameBatchesAndAMissingCacheIsRefused()
    {
        using var dir = new TempDirectory();
        string root = dir.File("cache");
        var config = Config(1);
        var cached = config.Data with { UseCache = true, CacheDir = root };
        var registry = Registry();
        var missing = Assert.Throws<StaleCacheException>(() => TrainingDataLoader.Load(cached, config.Training, registry: registry));
        Assert.Contains("loom data cache", missing.Message);

        foreach (string task in registry.TasksOf("mix")) TaskCache.Build(registry.GetTask(task), new TaskCacheBuildOptions { Root = root });
        var live = TrainingDataLoader.Load(config.Data, config.Training, registry: registry);
        var fromCache = TrainingDataLoader.Load(cached, config.Training, registry: registry);
        Assert.Contains("from the cache", fromCache.Description);
        foreach (long step in new long[] { 0, 7, 31 })
        {
            using var scope = NewDisposeScope();
            using var a = live.Train.GetBatch(step);
            using var b = fromCache.Train.GetBatch(step);
            Assert.True(a.Inputs.eq(b.Inputs).all().item<bool>() && a.Targets.eq(b.Targets).all().item<bool>() && a.LossWeights!.eq(b.LossWeights!).all().item<bool>());
        }
    }

    private sealed class StopAt(long step, CancellationTokenSource cts) : ITrainingObserver
    {
        public void OnStart(long startStep, long totalSteps) { }
        public void OnStep(long s) { if (s == step) cts.Cancel(); }
        public void OnTrainMetrics(MetricEvent metrics) { }
        public void OnValidationMetrics(MetricEvent metrics) { }
        public void OnCheckpoint(string directory) { }
    }
}
