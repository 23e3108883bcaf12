using Loom.Models.Reformer;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

public class ReformerTrainingTests
{
    /// <summary>A tiny LSH Reformer (rows of 32 tokens: 8 chunks of 4, 4 buckets, 2 rounds), reversible.</summary>
    private static RunConfig Config(string data, long steps)
    {
        var config = TrainerFixtures.Config(data, steps);
        return config with
        {
            Model = new ReformerOptions
            {
                VocabSize = 258, ModelDim = 16, NumLayers = 2, NumHeads = 2, HeadDim = 8, MlpDim = 32, MaxSequenceLength = 64,
                LshBuckets = 4, LshRounds = 2, LshChunkLength = 4, FfChunkLength = 8, OutputChunkLength = 8,
            },
        };
    }

    private static Trainer NewTrainer(RunConfig config, string runDir) =>
        new(config, TrainingDataLoader.Load(config.Data, config.Training), runDir, CPU);

    [Fact]
    public void StraightReformerRunEqualsRunResumedFromACheckpoint()
    {
        using var dir = new TempDirectory();
        string data = TrainerFixtures.WriteCorpus(dir);
        const int n = 3;

        using var straight = NewTrainer(Config(data, 2 * n), dir.File("straight"));
        straight.Run();

        using (var first = NewTrainer(Config(data, 2 * n), dir.File("resumed")))
        {
            using var cts = new CancellationTokenSource();
            first.Observer = new CancelAt(n, cts);
            Assert.True(first.Run(cts.Token).Interrupted);
        }
        using var resumed = NewTrainer(Config(data, 2 * n), dir.File("resumed"));
        resumed.Resume(TrainingCheckpoint.Resolve(dir.File("resumed")));
        Assert.Equal(n, resumed.State.Step);
        resumed.Run();

        Assert.IsType<ReformerModel>(resumed.Model);
        Assert.Equal(straight.State with { ElapsedSeconds = 0 }, resumed.State with { ElapsedSeconds = 0 });
        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        Assert.Equal(a.Keys, b.Keys);
        Assert.Contains("lsh_step", a.Keys); // the rotations' counter travels with the weights
        foreach (var key in a.Keys) Assert.True(a[key].eq(b[key]).all().item<bool>(), $"weight {key} differs");
    }

    private sealed class CancelAt(long step, CancellationTokenSource cts) : ITrainingObserver
    {
        public void OnStart(long startStep, long totalSteps) { }
        public void OnStep(long s) { if (s == step) cts.Cancel(); }
        public void OnTrainMetrics(MetricEvent metrics) { }
        public void OnValidationMetrics(MetricEvent metrics) { }
        public void OnCheckpoint(string directory) { }
    }
}
