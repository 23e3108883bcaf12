using Loom.Models.Parallelism;
using Xunit.Abstractions;

namespace Loom.Cli.Tests;

/// <summary>
/// <c>mpirun -n N loom train --set parallelism.model=M</c> against one process on the same global batch: the model
/// group's ranks each hold part of every layer (Megatron-style), and together must end at the one process's weights.
/// Their checkpoints are sharded, and load (resharded) in one process and on other meshes.
/// </summary>
public sealed class TensorParallelTrainingTests : IClassFixture<TensorParallelTrainingTests.OneProcessRun>
{
    /// <summary>
    /// The weights may differ only by float32 summation order (partial sums over the model group). AdamW magnifies that
    /// rounding in the rare element whose gradient is near zero (its update is about ±lr whatever the gradient's size),
    /// in proportion to the learning rate: at 0.01 one element of 2048 lands 1.5e-5 away, at 0.005 7.4e-6, every other
    /// tensor within 1e-6. The fixture trains at 0.005.
    /// </summary>
    private const double Tolerance = 1e-5;

    private const int Steps = 20;

    // Two layers, the tiny preset's multi-query attention (K/V replicated over the model group) and parallel block.
    private static readonly string[] Tiny =
    [
        "--set", "model.model_dim=32", "--set", "model.num_layers=2", "--set", "model.mlp_dim=64", "--set", "model.head_dim=16",
        "--set", "model.num_heads=2", "--set", "data.sequence_length=32", "--set", "training.batch_size=4",
        "--set", "training.optimizer=adamw", "--set", "training.learning_rate=0.005", "--set", "training.warmup_steps=2",
        "--set", "training.log_every=5", "--set", "training.eval_batches=2", "--set", "training.checkpoint_every=10",
        "--device", "cpu", "--threads", "1",
    ];

    private readonly OneProcessRun reference;
    private readonly ITestOutputHelper output;

    public TensorParallelTrainingTests(OneProcessRun reference, ITestOutputHelper output) => (this.reference, this.output) = (reference, output);

    private static string Loom => Path.Combine(AppContext.BaseDirectory, "loom.dll");

    /// <summary>One process trained for <see cref="Steps"/> steps on the global batch, shared by the tests.</summary>
    public sealed class OneProcessRun() : OneProcessTrainingRun("loom-tp-", Tiny, Steps);

    [SkippableFact]
    public void TwoTensorParallelRanksEndAtTheWeightsOfOneProcess()
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        var two = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("tp2"), "--set", $"training.steps={Steps}", "--set", "parallelism.model=2"]);
        Assert.True(two.ExitCode == 0, two.ToString());
        Assert.Contains("tensor parallel: mesh 1 × 2 (data × model) over 2 ranks (mpi)", two.Stdout);
        Assert.Single(two.Stdout.Split('\n'), l => l.StartsWith("done:", StringComparison.Ordinal)); // only rank 0 speaks

        // Each rank wrote its part: split kernels in both files, replicated tensors once, and an index over them.
        string checkpoint = reference.Checkpoint("tp2", Steps);
        var index = CheckpointIndex.Read(checkpoint);
        Assert.Equal((1, 2), (index.MeshData, index.MeshModel));
        Assert.Equal(0, index.Model["blocks.0.attn.wq.weight"].SplitDim);
        Assert.Equal(1, index.Model["blocks.1.mlp.down.weight"].SplitDim);
        Assert.Null(index.Model["embed"].SplitDim);
        Assert.Equal(2, index.Optimizer.Values.Count(e => e.SplitDim is not null) / index.Model.Values.Count(e => e.SplitDim is not null)); // AdamW's two moments follow their parameter

        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), checkpoint);
        output.WriteLine($"tensor parallel 2 vs 1 process after {Steps} steps: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"tensor parallel 2 vs 1 process: max relative weight difference {difference:E2}");
        var one = OneProcessTrainingRun.TrainLosses(Path.Combine(reference.Dir, "one"));
        var parallel = OneProcessTrainingRun.TrainLosses(Path.Combine(reference.Dir, "tp2"));
        Assert.Equal(one.Select(l => l.Step), parallel.Select(l => l.Step));
        Assert.All(one.Zip(parallel), p => Assert.True(Math.Abs(p.First.Loss - p.Second.Loss) < 1e-4, $"step {p.First.Step}: {p.First.Loss} vs {p.Second.Loss}"));

        // The comparison can tell: a different learning rate ends elsewhere.
        var other = CliRunner.Run(reference.Dir, [.. reference.Train("other"), "--set", $"training.steps={Steps}", "--set", "training.learning_rate=0.0045"]);
        Assert.True(other.ExitCode == 0, other.Stderr + other.Stdout);
        double control = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("other", Steps));
        Assert.True(control > 100 * Tolerance, $"a 10% smaller learning rate ends only {control:E2} away: the comparison cannot tell runs apart");

        // The sharded checkpoint loads in one process and generates what the one process's model generates.
        string[] generate = ["generate", "--prompt", "it is a truth", "-t", "0", "-n", "24", "--device", "cpu"];
        var fromShards = CliRunner.Run(reference.Dir, [.. generate, "--checkpoint", Path.Combine(reference.Dir, "tp2")]);
        var fromWhole = CliRunner.Run(reference.Dir, [.. generate, "--checkpoint", Path.Combine(reference.Dir, "one")]);
        Assert.True(fromShards.ExitCode == 0, fromShards.Stderr + fromShards.Stdout);
        Assert.True(fromWhole.ExitCode == 0, fromWhole.Stderr + fromWhole.Stdout);
        Assert.Equal(fromWhole.Stdout, fromShards.Stdout);
    }

    [SkippableFact]
    public void ATwoByTwoMeshOnFourProcessesEndsAtTheWeightsOfOneProcess()
    {
        MpiRun.RequireMpirun();
        // Serial blocks and grouped K/V heads (split with the query heads), unlike the fixture's model.
        string[] variant = ["--set", "model.parallel_block=false", "--set", "model.num_kv_heads=2", "--set", $"training.steps={Steps}"];
        var one = CliRunner.Run(reference.Dir, [.. reference.Train("one-serial"), .. variant]);
        Assert.True(one.ExitCode == 0, one.Stderr + one.Stdout);
        var mesh = MpiRun.Dotnet(4, reference.Dir, Loom, [.. reference.Train("mesh"), .. variant, "--set", "parallelism.model=2", "--set", "parallelism.data=2"]);
        Assert.True(mesh.ExitCode == 0, mesh.ToString());
        Assert.Contains("tensor parallel: mesh 2 × 2 (data × model) over 4 ranks (mpi)", mesh.Stdout);
        Assert.Contains("2 of the 4 rows of every batch per replica", mesh.Stdout);
        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one-serial", Steps), reference.Checkpoint("mesh", Steps));
        output.WriteLine($"2 × 2 mesh vs 1 process after {Steps} steps: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"2 × 2 mesh vs 1 process: max relative weight difference {difference:E2}");
    }

    [SkippableFact]
    public void CheckpointsMoveBetweenOneProcessAndTensorParallelRanks()
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);

        // One process for 10 steps, then 2 tensor-parallel ranks from its whole checkpoint.
        var first = CliRunner.Run(reference.Dir, [.. reference.Train("to-tp"), "--set", $"training.steps={Steps / 2}"]);
        Assert.True(first.ExitCode == 0, first.Stderr + first.Stdout);
        var rest = MpiRun.Dotnet(2, reference.Dir, Loom,
            ["train", "--resume", "--run-dir", Path.Combine(reference.Dir, "to-tp"), "--set", $"training.steps={Steps}", "--set", "parallelism.model=2", "--threads", "1"]);
        Assert.True(rest.ExitCode == 0, rest.ToString());
        Assert.Contains($"(step {Steps / 2})", rest.Stdout);
        double toParallel = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("to-tp", Steps));
        output.WriteLine($"1 process then 2 tensor-parallel ranks vs 1 process: {toParallel:E2}");
        Assert.True(toParallel < Tolerance, $"resumed on 2 tensor-parallel ranks: max relative weight difference {toParallel:E2}");

        // 2 tensor-parallel ranks for 10 steps, then one process from their sharded checkpoint (optimizer state included).
        var sharded = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("from-tp"), "--set", $"training.steps={Steps / 2}", "--set", "parallelism.model=2"]);
        Assert.True(sharded.ExitCode == 0, sharded.ToString());
        var alone = CliRunner.Run(reference.Dir,
            ["train", "--resume", "--run-dir", Path.Combine(reference.Dir, "from-tp"), "--set", $"training.steps={Steps}", "--set", "parallelism.model=1", "--threads", "1"]);
        Assert.True(alone.ExitCode == 0, alone.Stderr + alone.Stdout);
        double toOne = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("from-tp", Steps));
        output.WriteLine($"2 tensor-parallel ranks then 1 process vs 1 process: {toOne:E2}");
        Assert.True(toOne < Tolerance, $"resumed in one process from a sharded checkpoint: max relative weight difference {toOne:E2}");
    }

    [SkippableFact]
    public void ATensorParallelRunResumedOnItsOwnMeshIsBitIdentical()
    {
        MpiRun.RequireMpirun();
        string[] tp = ["--set", "parallelism.model=2"];
        var straight = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("tp-straight"), "--set", $"training.steps={Steps}", .. tp]);
        Assert.True(straight.ExitCode == 0, straight.ToString());
        var first = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("tp-resumed"), "--set", $"training.steps={Steps / 2}", .. tp]);
        Assert.True(first.ExitCode == 0, first.ToString());
        var rest = MpiRun.Dotnet(2, reference.Dir, Loom,
            ["train", "--resume", "--run-dir", Path.Combine(reference.Dir, "tp-resumed"), "--set", $"training.steps={Steps}", "--threads", "1"]);
        Assert.True(rest.ExitCode == 0, rest.ToString());
        Assert.Contains($"(step {Steps / 2})", rest.Stdout);
        Assert.Equal(0.0, WeightFiles.MaxRelativeDifference(reference.Checkpoint("tp-straight", Steps), reference.Checkpoint("tp-resumed", Steps)));
    }

    [SkippableTheory]
    [InlineData(new[] { "--set", "parallelism.model=3" }, "parallelism.model = 3 does not divide the 2 ranks of the job")]
    [InlineData(new[] { "--set", "parallelism.model=2", "--set", "parallelism.data=2" }, "does not match the 2 ranks of the job: start 4 ranks (mpirun -n 4)")]
    [InlineData(new[] { "--set", "parallelism.model=2", "--set", "model.mlp_dim=65" }, "model.mlp_dim = 65 is not divisible by parallelism.model = 2")]
    [InlineData(new[] { "--set", "parallelism.model=2", "--set", "model.num_heads=3" }, "model.num_heads = 3 is not divisible by parallelism.model = 2")]
    public void AMeshOrModelThatDoesNotSplitIsAOneLineError(string[] settings, string message)
    {
        MpiRun.RequireMpirun();
        var run = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("bad-" + Guid.NewGuid().ToString("N")[..8]), "--set", "training.steps=2", .. settings]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(message, run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr); // a one-line error, not a stack trace
    }

    [Fact]
    public void TensorParallelismInOneProcessOrWithAdafactorIsAOneLineError()
    {
        var alone = CliRunner.Run(reference.Dir, [.. reference.Train("alone"), "--set", "training.steps=2", "--set", "parallelism.model=2"]);
        Assert.NotEqual(0, alone.ExitCode);
        Assert.Contains("parallelism.model = 2 does not divide the 1 ranks of the job", alone.Stderr);
        var adafactor = CliRunner.Run(reference.Dir, [.. reference.Train("adafactor"), "--set", "training.steps=2", "--set", "parallelism.model=2", "--set", "training.optimizer=adafactor"]);
        Assert.NotEqual(0, adafactor.ExitCode);
        Assert.Contains("training.optimizer = adafactor does not combine with parallelism.model = 2 yet", adafactor.Stderr);
    }
}
