using System.Globalization;
using System.Text.RegularExpressions;
using Loom.Core;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Loom.Cli.Tests;

/// <summary>
/// Sharded data parallelism (training.zero_stage): <c>mpirun -n 2 loom train</c> with ZeRO 1, 2 and 3 must end at the
/// weights of one process on the same global batch, its checkpoints must resume on one process, and ZeRO-3 must keep
/// about half of plain data parallelism's parameters and optimizer state on each of 2 ranks.
/// </summary>
public sealed partial class ZeroTrainingTests : IClassFixture<DataParallelTrainingTests.OneProcessRun>
{
    /// <summary>As for plain data parallelism: only float32 summation order may differ.</summary>
    private const double Tolerance = 1e-5;

    private const int Steps = 20;

    private readonly DataParallelTrainingTests.OneProcessRun reference;
    private readonly ITestOutputHelper output;

    public ZeroTrainingTests(DataParallelTrainingTests.OneProcessRun reference, ITestOutputHelper output) => (this.reference, this.output) = (reference, output);

    private static string Loom => Path.Combine(AppContext.BaseDirectory, "loom.dll");

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void TwoShardedRanksEndAtTheWeightsOfOneProcess(int stage)
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        string name = $"zero{stage}";
        var two = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train(name), "--set", $"training.steps={Steps}", "--set", $"training.zero_stage={stage}"]);
        Assert.True(two.ExitCode == 0, two.ToString());
        Assert.Contains($"memory per rank (training.zero_stage = {stage})", two.Stdout);
        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint(name, Steps));
        output.WriteLine($"ZeRO-{stage} on 2 ranks vs 1 process after {Steps} steps: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"ZeRO-{stage} on 2 ranks vs 1 process: max relative weight difference {difference:E2}");
        // The checkpoint holds the whole optimizer state, as one process's does.
        var full = SafeTensors.Load(Path.Combine(reference.Checkpoint("one", Steps), "optimizer.safetensors"));
        var sharded = SafeTensors.Load(Path.Combine(reference.Checkpoint(name, Steps), "optimizer.safetensors"));
        Assert.Equal(full.Keys.Order(), sharded.Keys.Order());
        foreach (var t in full.Values.Concat(sharded.Values)) t.Dispose();
    }

    [SkippableFact]
    public void ZeroThreeWithAdamWWeightDecayAndTightClippingEndsAtTheWeightsOfOneProcess()
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        // Clipping at 0.05 scales every update, so the ranks must agree on the global norm.
        string[] adamW = ["--set", $"training.steps={Steps}", "--set", "training.optimizer=adamw", "--set", "training.weight_decay=0.1", "--set", "training.clip_norm=0.05"];
        var one = CliRunner.Run(reference.Dir, [.. reference.Train("adamw-one"), .. adamW]);
        Assert.True(one.ExitCode == 0, one.Stderr + one.Stdout);
        var two = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train("adamw-zero3"), .. adamW, "--set", "training.zero_stage=3"]);
        Assert.True(two.ExitCode == 0, two.ToString());
        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("adamw-one", Steps), reference.Checkpoint("adamw-zero3", Steps));
        output.WriteLine($"AdamW, ZeRO-3 on 2 ranks vs 1 process after {Steps} steps: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"AdamW, ZeRO-3 on 2 ranks vs 1 process: max relative weight difference {difference:E2}");
        double control = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint("adamw-one", Steps));
        Assert.True(control > 100 * Tolerance, $"AdamW ends only {control:E2} from Adafactor: the comparison cannot tell runs apart");
    }

    [SkippableTheory]
    [InlineData(0)]
    [InlineData(3)]
    public void AZeroThreeCheckpointOfTwoRanksResumesOnOneProcess(int resumeStage)
    {
        MpiRun.RequireMpirun();
        Assert.True(reference.ExitCode == 0, reference.Output);
        string name = $"zero3-resumed-as-{resumeStage}";
        var first = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train(name), "--set", $"training.steps={Steps / 2}", "--set", "training.zero_stage=3"]);
        Assert.True(first.ExitCode == 0, first.ToString());
        var rest = CliRunner.Run(reference.Dir,
            ["train", "--resume", "--run-dir", Path.Combine(reference.Dir, name), "--set", $"training.steps={Steps}", "--set", $"training.zero_stage={resumeStage}", "--threads", "1"]);
        Assert.True(rest.ExitCode == 0, rest.Stderr + rest.Stdout);
        Assert.Contains($"(step {Steps / 2})", rest.Stdout);
        double difference = WeightFiles.MaxRelativeDifference(reference.Checkpoint("one", Steps), reference.Checkpoint(name, Steps));
        output.WriteLine($"ZeRO-3 on 2 ranks to step {Steps / 2}, then 1 process at stage {resumeStage}: max relative weight difference {difference:E2}");
        Assert.True(difference < Tolerance, $"ZeRO-3 checkpoint resumed on 1 process at stage {resumeStage}: max relative weight difference {difference:E2}");
    }

    [SkippableFact]
    public void ZeroThreeKeepsAboutHalfThePerRankParametersAndOptimizerStateOfPlainDataParallelism()
    {
        MpiRun.RequireMpirun();
        var plain = Memory("memory-zero0", 0);
        var zero3 = Memory("memory-zero3", 3);
        var zero2 = Memory("memory-zero2", 2);
        var zero1 = Memory("memory-zero1", 1);
        for (int rank = 0; rank < 2; rank++)
        {
            double ratio = (double)(zero3[rank].Parameters + zero3[rank].Optimizer) / (plain[rank].Parameters + plain[rank].Optimizer);
            output.WriteLine(FormattableString.Invariant($"rank {rank}: ZeRO-3 parameters+optimizer state {ratio:F3} of plain data parallelism's; gradients {(double)zero3[rank].Gradients / plain[rank].Gradients:F3}"));
            Assert.InRange(ratio, 0.25, 0.75);
            Assert.InRange((double)zero3[rank].Gradients / plain[rank].Gradients, 0.25, 0.75);
            Assert.Equal(plain[rank].Parameters, zero2[rank].Parameters); // ZeRO-2 keeps whole parameters
            Assert.InRange((double)zero2[rank].Optimizer / plain[rank].Optimizer, 0.25, 0.75);
            Assert.InRange((double)zero2[rank].Gradients / plain[rank].Gradients, 0.25, 0.75);
            Assert.Equal(plain[rank].Gradients, zero1[rank].Gradients); // ZeRO-1 all-reduces the whole gradient
            Assert.InRange((double)zero1[rank].Optimizer / plain[rank].Optimizer, 0.25, 0.75);
        }
        // Together the ranks hold each parameter and its state exactly once.
        Assert.Equal(plain[0].Parameters, zero3[0].Parameters + zero3[1].Parameters);
        Assert.Equal(plain[0].Optimizer, zero3[0].Optimizer + zero3[1].Optimizer);
    }

    [Fact]
    public void AZeroStageOutsideZeroToThreeIsAOneLineError()
    {
        var run = CliRunner.Run(reference.Dir, [.. reference.Train("bad-zero"), "--set", "training.steps=1", "--set", "training.zero_stage=4"]);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("training.zero_stage = 4 must be 0 (plain data parallelism), 1 (shard optimizer state), 2 (and gradients) or 3 (and parameters)", run.Stderr);
    }

    private List<(long Parameters, long Gradients, long Optimizer)> Memory(string runDir, int stage)
    {
        var run = MpiRun.Dotnet(2, reference.Dir, Loom, [.. reference.Train(runDir), "--set", "training.steps=2", "--set", $"training.zero_stage={stage}"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        var line = run.Stdout.Split('\n').Single(l => l.StartsWith("memory per rank", StringComparison.Ordinal));
        output.WriteLine(line);
        return [.. RankMemory().Matches(line).Select(m => (Long(m, 1), Long(m, 2), Long(m, 3)))];
    }

    private static long Long(Match m, int group) => long.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"rank \d+: parameters (\d+) B, gradients (\d+) B, optimizer state (\d+) B")]
    private static partial Regex RankMemory();

}
