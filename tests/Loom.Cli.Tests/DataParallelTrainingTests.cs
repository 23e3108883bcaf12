using Loom.Core;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Loom.Cli.Tests;

/// <summary>
/// <c>mpirun -n 2 loom train</c> against one process on the same global batch: the two ranks together draw
/// exactly the one process's rows, average their gradients, and so must end at its weights.
/// </summary>
public sealed class DataParallelTrainingTests : IClassFixture<DataParallelTrainingTests.OneProcessRun>
{
    /// <summary>The weights may differ only by float32 summation order (the mean of two half-batch means).</summary>
    private const double Tolerance = 1e-5;

    private const int Steps = 20;

    private static readonly string[] Tiny =
    [
        "--set", "model.model_dim=32", "--set", "model.num_layers=1", "--set", "model.mlp_dim=64", "--set", "model.head_dim=16",
        "--set", "model.num_heads=2", "--set", "data.sequence_length=32", "--set", "training.batch_size=4",
        "--set", "training.learning_rate=0.01", "--set", "training.warmup_steps=2", "--set", "training.log_every=5",
        "--set", "training.eval_batches=2", "--set", "training.checkpoint_every=10", "--device", "cpu", "--threads", "1",
    ];

    private readonly OneProcessRun reference;
    private readonly ITestOutputHelper output;

    public DataParallelTrainingTests(OneProcessRun reference, ITestOutputHelper output) => (this.reference, this.output) = (reference, output);

    private static string Loom => Path.Combine(AppContext.BaseDirectory, "loom.dll");

    /// <summary>One process trained for <see cref="Steps"/> steps on the global batch, shared by the tests.</summary>
    public sealed class OneProcessRun() : OneProcessTrainingRun("loom-dp-", Tiny, Steps);

    [SkippableFact]
    public void TwoRanksEndAtTheWeightsOfOneProcessOnTheSameGlobalBatch()
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        var two = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("two"), "--set", $"training.steps={Steps}"]);
        Assert.True(two.ExitCode == 0, two.ToString());
        Assert.Contains("data parallel: 2 ranks (mpi), 2 of the 4 rows", two.Stdout);
        Assert.Single(two.Stdout.Split('\n'), l => l.StartsWith("done:", StringComparison.Ordinal)); // only rank 0 speaks

        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("two", Steps));
        output.WriteLine($"2 ranks vs 1 process after {Steps} steps: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"2 ranks vs 1 process: max relative weight difference {difference:E2}");

        // Rank 0 alone wrote the metrics, with the ranks' averaged losses: the one process's, line for line.
        var one = OneProcessTrainingRun.TrainLosses(Path.Combine(reference.Dir, "one"));
        var parallel = OneProcessTrainingRun.TrainLosses(Path.Combine(reference.Dir, "two"));
        Assert.Equal(one.Select(l => l.Step), parallel.Select(l => l.Step));
        Assert.All(one.Zip(parallel), p => Assert.True(Math.Abs(p.First.Loss - p.Second.Loss) < 1e-4, $"step {p.First.Step}: {p.First.Loss} vs {p.Second.Loss}"));

        // The comparison can tell: half the global batch on one process ends elsewhere.
        var half = CliRunner.Run(reference.Dir, [.. reference.Train("half"), "--set", $"training.steps={Steps}", "--set", "training.batch_size=2"]);
        Assert.True(half.ExitCode == 0, half.Stderr + half.Stdout);
        double control = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("half", Steps));
        output.WriteLine($"half the global batch vs the whole: {control:E2}");
        Assert.True(control > 100 * Tolerance, $"half the global batch ends only {control:E2} away: the comparison cannot tell runs apart");
    }

    [SkippableFact]
    public void ACheckpointOfOneProcessResumesOnTwoRanks()
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        var first = CliRunner.Run(reference.Dir, [.. reference.Train("resumed"), "--set", $"training.steps={Steps / 2}"]);
        Assert.True(first.ExitCode == 0, first.Stderr + first.Stdout);
        var rest = MpiRun.Dotnet(2, reference.Dir, Loom,
            ["train", "--resume", "--run-dir", Path.Combine(reference.Dir, "resumed"), "--set", $"training.steps={Steps}", "--threads", "1"]);
        Assert.True(rest.ExitCode == 0, rest.ToString());
        Assert.Contains($"(step {Steps / 2})", rest.Stdout);
        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("resumed", Steps));
        output.WriteLine($"resumed at step {Steps / 2} on 2 ranks vs 1 process throughout: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"resumed on 2 ranks vs 1 process throughout: max relative weight difference {difference:E2}");
    }

    [SkippableFact]
    public void RanksWithDifferentConfigsStopWithAnErrorNamingTheRank()
    {
        MpiRun.RequireMpirun();
        string[] train = [.. reference.Train("mismatch"), "--set", "training.steps=2"];
        var run = MpiRun.Run(reference.Dir, ["-n", "1", "dotnet", Loom, .. train, ":", "-n", "1", "dotnet", Loom, .. train, "--set", "training.seed=7"]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("loom: error: rank ", run.Stderr);
        Assert.Contains("rank 1 resolved a different config from rank 0's", run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr); // a one-line error, not a stack trace
    }

    [SkippableFact]
    public void AGlobalBatchThatDoesNotSplitOverTheRanksIsAnError()
    {
        MpiRun.RequireMpirun();
        var run = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("uneven"), "--set", "training.steps=2", "--set", "training.batch_size=3"]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("training.batch_size = 3 is the global batch and must split evenly over the 2 ranks", run.Stderr);
    }
}
