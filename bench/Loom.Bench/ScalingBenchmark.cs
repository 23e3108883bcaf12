using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Training.Metrics;

namespace Loom.Bench;

/// <summary>Flags of the <c>scaling</c> benchmark.</summary>
internal sealed record ScalingSettings
{
    public IReadOnlyList<int> Ranks { get; init; } = [1, 2];
    public int Threads { get; init; } = 1;
    public int BatchPerRank { get; init; } = 8;
    public int Steps { get; init; } = 60;
    public string Preset { get; init; } = "tiny";
    public string? Loom { get; init; }
    public string[] Extra { get; init; } = [];
    public bool Memory { get; init; }

    public const string Usage = """
        usage: loom-bench scaling [flags]

        Data-parallel weak scaling on this machine: `mpirun -n W loom train` of the demo recipe (austen) for each W,
        every rank limited to the same number of threads and the same rows per step (the global batch grows with W),
        against W = 1 in the same run. Throughput is the trainer's own tokens/s, averaged over the logging intervals
        after the first (start-up and the first steps' allocations excluded). PASS when 2 ranks reach at least 1.8x
        one rank (90% efficiency), as issue 9 asks. Needs MPICH's mpirun and a built CLI.

          --ranks LIST        world sizes to run, comma-separated (default 1,2)
          --threads N         libtorch/OpenMP threads per rank (default 1)
          --batch-per-rank N  rows per rank per step (default 8)
          --steps N           training steps per run (default 60; logged every 10)
          --preset NAME       model preset (default tiny)
          --loom PATH         the loom CLI (default: src/Loom.Cli/bin/Release/net10.0/linux-x64/loom under the repository)
          --set K=V           another config override for every run (repeatable)
          --memory            instead: what each of 2 ranks holds under each parallelism mode (data parallel, ZeRO 1, 2
                              and 3, tensor parallel 2), from `loom train`'s memory line after --steps steps (AdamW
                              for every mode, as tensor parallelism needs it), against data parallel in the same run
        """;

    public static ScalingSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new ScalingSettings(), (s, flag) => flag.Name switch
    {
        "--ranks" => s with { Ranks = flag.PositiveInts() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--batch-per-rank" => s with { BatchPerRank = flag.PositiveInt() },
        "--steps" => s with { Steps = Math.Max(20, flag.PositiveInt()) },
        "--preset" => s with { Preset = flag.Value() },
        "--loom" => s with { Loom = flag.Value() },
        "--set" => s with { Extra = [.. s.Extra, flag.Value()] },
        "--memory" => s with { Memory = true },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>scaling</c> benchmark: how close data parallelism over MPI comes to linear on one machine. Each
/// world size trains the same recipe through the real launcher and CLI, so the measure includes the
/// all-reduce of every step and the ranks' contention for memory bandwidth.
/// </summary>
internal static class ScalingBenchmark
{
    private sealed record Outcome(int Ranks, int GlobalBatch, double TokensPerSecond, double FinalLoss, double Seconds);

    public static string Run(ScalingSettings s)
    {
        string loom = s.Loom ?? DefaultCli();
        if (!File.Exists(loom)) throw new ArgumentException($"the loom CLI is not at {loom}: build it (dotnet build src/Loom.Cli -c Release) or pass --loom PATH");
        double? loadBefore = MachineInfo.LoadAverage();
        string root = Path.Combine(Path.GetTempPath(), $"loom-bench-scaling-{Environment.ProcessId}");
        try
        {
            if (s.Memory) return MemoryReport(loom, s, root, loadBefore);
            var outcomes = s.Ranks.Select(w => Train(loom, w, s, Path.Combine(root, $"w{w}"))).ToList();
            return Report(s, outcomes, (loadBefore, MachineInfo.LoadAverage()));
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static string DefaultCli()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Loom.slnx")))
                return Path.Combine(dir.FullName, "src", "Loom.Cli", "bin", "Release", "net10.0", "linux-x64", "loom");
        throw new ArgumentException("run from inside the repository, or pass --loom PATH to the loom CLI");
    }

    /// <summary>The modes the memory report compares, as config overrides.</summary>
    private static readonly (string Mode, string[] Sets)[] MemoryModes =
    [
        ("data parallel", ["training.zero_stage=0"]),
        ("ZeRO-1", ["training.zero_stage=1"]),
        ("ZeRO-2", ["training.zero_stage=2"]),
        ("ZeRO-3", ["training.zero_stage=3"]),
        ("tensor parallel 2", ["parallelism.model=2"]),
    ];

    private sealed record RankMemory(long Parameters, long Gradients, long OptimizerState, long PeakResident);

    private static string MemoryReport(string loom, ScalingSettings s, string root, double? loadBefore)
    {
        var rows = new List<(string Mode, RankMemory Rank0)>();
        foreach (var (mode, sets) in MemoryModes)
        {
            // Four heads (the tiny preset has three), so that the heads split over a model axis of 2; the same model in every mode.
            var settings = s with { Extra = [.. s.Extra, "training.optimizer=adamw", "model.num_heads=4", .. sets], Steps = Math.Min(s.Steps, 20) };
            string stdout = Launch(loom, 2, settings, Path.Combine(root, mode.Replace(' ', '-')), out _);
            var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith("memory per rank", StringComparison.Ordinal))
                       ?? throw new InvalidOperationException($"{mode}: loom train printed no memory line");
            var match = System.Text.RegularExpressions.Regex.Match(line, @"rank 0: parameters (\d+) B, gradients (\d+) B, optimizer state (\d+) B, peak resident (\d+) B");
            if (!match.Success) throw new InvalidOperationException($"{mode}: cannot read the memory line '{line}'");
            long Group(int i) => long.Parse(match.Groups[i].Value, CultureInfo.InvariantCulture);
            rows.Add((mode, new RankMemory(Group(1), Group(2), Group(3), Group(4))));
        }
        var text = new StringBuilder();
        var baseline = rows[0].Rank0;
        text.AppendLine($"## scaling --memory: what rank 0 of 2 holds under each parallelism mode ({s.Preset} with 4 heads, AdamW, {Math.Min(s.Steps, 20)} steps)");
        text.AppendLine();
        text.AppendLine($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {Fmt(loadBefore)} -> {Fmt(MachineInfo.LoadAverage())}; commit {MachineInfo.GitCommit()}");
        text.AppendLine("- parameters, gradients and optimizer state are the tensors the rank holds after a step (a ZeRO-3 rank between steps);");
        text.AppendLine("  peak resident is the process's VmHWM: those plus activations, libtorch's buffers and the .NET runtime");
        text.AppendLine();
        text.AppendLine("| mode | parameters (B) | gradients (B) | optimizer state (B) | vs data parallel | peak resident (MiB) |");
        text.AppendLine("|---|---|---|---|---|---|");
        foreach (var (mode, m) in rows)
        {
            double ratio = (double)(m.Parameters + m.Gradients + m.OptimizerState) / (baseline.Parameters + baseline.Gradients + baseline.OptimizerState);
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {mode} | {m.Parameters:N0} | {m.Gradients:N0} | {m.OptimizerState:N0} | {ratio:F2}x | {m.PeakResident / 1048576.0:F0} |"));
        }
        return text.ToString();
    }

    private static Outcome Train(string loom, int ranks, ScalingSettings s, string runDir)
    {
        var clock = Stopwatch.StartNew();
        Launch(loom, ranks, s, runDir, out int globalBatch);
        var train = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit).ToList();
        var steady = train.Skip(1).Select(e => e.TokensPerSecond ?? double.NaN).ToList();
        if (steady.Count == 0) throw new InvalidOperationException($"{runDir}: too few logging intervals to measure; raise --steps");
        return new Outcome(ranks, globalBatch, steady.Average(), train[^1].Loss, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Runs <c>mpirun -n ranks loom train</c> of the demo recipe; returns its standard output.</summary>
    private static string Launch(string loom, int ranks, ScalingSettings s, string runDir, out int globalBatch)
    {
        globalBatch = s.BatchPerRank * ranks;
        string[] sets =
        [
            "device=cpu", $"training.steps={s.Steps}", $"training.warmup_steps={s.Steps / 10}", $"training.batch_size={globalBatch}",
            "training.log_every=10", $"training.eval_every={s.Steps}", "training.eval_batches=1", $"training.checkpoint_every={s.Steps}",
            .. s.Extra,
        ];
        var start = new ProcessStartInfo("mpirun") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["-n", ranks.ToString(CultureInfo.InvariantCulture), loom, "train", "--config", "demo", "--preset", s.Preset, "--threads",
                     s.Threads.ToString(CultureInfo.InvariantCulture), "--run-dir", runDir, .. sets.SelectMany(v => new[] { "--set", v })])
            start.ArgumentList.Add(a);
        string threads = s.Threads.ToString(CultureInfo.InvariantCulture);
        start.Environment["OMP_NUM_THREADS"] = threads;
        start.Environment["MKL_NUM_THREADS"] = threads;
        Console.Error.WriteLine($"scaling: mpirun -n {ranks} loom train ({s.Preset}, {globalBatch} rows per step, {s.Threads} thread(s) per rank, {s.Steps} steps{string.Concat(s.Extra.Select(e => ", " + e))})");
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("mpirun did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new ArgumentException($"mpirun could not be started ({e.Message}): install mpich (apt-get install mpich)");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"mpirun -n {ranks} loom train failed (exit code {process.ExitCode}): {stderr.Trim().Split('\n').LastOrDefault()} {stdout.Result.Trim().Split('\n').LastOrDefault()}");
            return stdout.Result;
        }
    }

    private static string Report(ScalingSettings s, List<Outcome> outcomes, (double? Before, double? After) load)
    {
        var text = new StringBuilder();
        void Line(string line) => text.AppendLine(line);
        var one = outcomes.FirstOrDefault(o => o.Ranks == 1);
        Line($"## scaling: data parallelism over MPI, {s.Threads} thread(s) per rank, {s.BatchPerRank} rows of 256 tokens per rank per step");
        Line("");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores, {MachineInfo.OperatingSystem()}; load average {Fmt(load.Before)} -> {Fmt(load.After)}");
        Line($"- commit: {MachineInfo.GitCommit()}; preset {s.Preset}, recipe configs/runs/demo.json, {s.Steps} steps");
        Line("");
        Line("| ranks | global batch | tokens/s | speed-up vs 1 rank | efficiency | last training loss | wall seconds |");
        Line("|---|---|---|---|---|---|---|");
        foreach (var o in outcomes)
        {
            double? speedup = one is null ? null : o.TokensPerSecond / one.TokensPerSecond;
            Line(string.Create(CultureInfo.InvariantCulture,
                $"| {o.Ranks} | {o.GlobalBatch} | {o.TokensPerSecond:F0} | {(speedup is double x ? $"{x:F2}x" : "n/a")} | {(speedup is double y ? $"{100 * y / o.Ranks:F0}%" : "n/a")} | {o.FinalLoss:F4} | {o.Seconds:F0} |"));
        }
        var two = outcomes.FirstOrDefault(o => o.Ranks == 2);
        if (one is not null && two is not null)
        {
            double speedup = two.TokensPerSecond / one.TokensPerSecond;
            Line("");
            Line(string.Create(CultureInfo.InvariantCulture, $"{(speedup >= 1.8 ? "PASS" : "FAIL")}: 2 ranks reach {speedup:F2}x one rank's throughput (needs at least 1.8x)"));
        }
        return text.ToString();
    }

    private static string Fmt(double? v) => v is double d ? d.ToString("F3", CultureInfo.InvariantCulture) : "n/a";
}
