using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Models;
using Loom.Models.Layers;
using Loom.Models.Reformer;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>reformer-memory</c> benchmark.</summary>
internal sealed record ReformerMemorySettings
{
    public IReadOnlyList<int> Depths { get; init; } = [2, 4, 8, 16];
    public int Batch { get; init; } = 4;
    public int Length { get; init; } = 256;
    public int ModelDim { get; init; } = 128;
    public int MlpDim { get; init; } = 512;

    /// <summary>Set in the child process that measures one configuration: "DEPTH:reversible" or "DEPTH:standard".</summary>
    public string? One { get; init; }

    /// <summary>What to sweep: "stack" (MLP blocks vs depth) or "model" (the real Reformer model vs length and depth).</summary>
    public string Sweep { get; init; } = "stack";

    /// <summary>Sequence lengths of the model sweep's length table.</summary>
    public IReadOnlyList<int> Lengths { get; init; } = [1024, 2048, 4096, 8192, 16384];

    /// <summary>Longest sequence the length table runs full attention at (its memory is quadratic).</summary>
    public int MaxFullLength { get; init; } = 16384;

    /// <summary>Set in the child process that measures one model: "ATTENTION:LENGTH:DEPTH:reversible|standard".</summary>
    public string? OneModel { get; init; }

    public const string Usage = """
        usage: loom-bench reformer-memory [flags]

        Peak memory of one training step (forward, backward, SGD update) of a stack of reversible blocks, run
        reversibly (activations recomputed in the backward) and as the standard stack (autograd keeps them), at
        each depth. F and G of every block are MLPs (GELU and SwiGLU) on half the residual each (X1, X2). Each
        configuration runs in a fresh child process on the CPU with one thread and glibc's mmap threshold fixed at
        128 KiB (so freed tensors return to the system); after a warm-up step the peak RSS mark is reset
        (/proc/self/clear_refs) and the report is the rise of VmHWM over VmRSS across the measured step.

          --depths LIST   block counts (default 2,4,8,16)
          --batch N       sequences per step (default 4)
          --length N      tokens per sequence (default 256)
          --model-dim N   width of X1 and X2 each (default 128)
          --mlp-dim N     MLP hidden width (default 512)
          --sweep KIND    stack (the above) or model: the real Reformer model (1 head of 64, LSH with 32 buckets,
                          2 rounds, chunks of 64), batch 1, peak memory vs length (--lengths) for full and LSH
                          attention with 2 reversible layers, and vs depth (--depths) at --length for standard
                          and reversible stacks with LSH attention
          --lengths LIST  the model sweep's lengths (default 1024,2048,4096,8192,16384)
          --max-full-length N  longest length full attention runs at (default 16384)
        """;

    public static ReformerMemorySettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new ReformerMemorySettings(), (s, flag) => flag.Name switch
    {
        "--depths" => s with { Depths = flag.PositiveInts() },
        "--batch" => s with { Batch = flag.PositiveInt() },
        "--length" => s with { Length = flag.PositiveInt() },
        "--model-dim" => s with { ModelDim = flag.PositiveInt() },
        "--mlp-dim" => s with { MlpDim = flag.PositiveInt() },
        "--one" => s with { One = flag.Value() },
        "--sweep" => s with { Sweep = flag.Value() is var sweep && sweep is "stack" or "model" ? sweep : throw new ArgumentException("--sweep takes stack or model") },
        "--lengths" => s with { Lengths = flag.PositiveInts() },
        "--max-full-length" => s with { MaxFullLength = flag.PositiveInt() },
        "--one-model" => s with { OneModel = flag.Value() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>reformer-memory</c> benchmark: does the reversible stack's training memory stay flat with depth while
/// the standard stack's grows (Reformer §3)? Peak resident memory of a step, each configuration in its own process.
/// </summary>
internal static class ReformerMemoryBenchmark
{
    public static string Run(ReformerMemorySettings s)
    {
        if (s.One is not null)
            return MeasureOne(s);
        if (s.OneModel is not null)
            return MeasureModel(s);
        if (!File.Exists("/proc/self/clear_refs"))
            throw new InvalidOperationException("reformer-memory reads /proc/self (Linux only)");
        if (s.Sweep == "model")
            return RunModelSweep(s);
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"## reformer-memory: peak memory of a training step vs depth, {DateTime.UtcNow:yyyy-MM-dd}");
        report.AppendLine();
        report.AppendLine(MachineLine());
        report.AppendLine(CultureInfo.InvariantCulture, $"Batch {s.Batch} × {s.Length} tokens, X1 and X2 of width {s.ModelDim} each, MLP hidden {s.MlpDim}; peak RSS rise over one step after a warm-up, one process per row.");
        report.AppendLine();
        report.AppendLine("| depth | parameters | standard peak (MiB) | reversible peak (MiB) | standard step (ms) | reversible step (ms) |");
        report.AppendLine("|---|---|---|---|---|---|");
        foreach (var depth in s.Depths)
        {
            var standard = Child(s, depth, "standard");
            var reversible = Child(s, depth, "reversible");
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {depth} | {standard.Parameters:N0} | {standard.PeakMiB:F1} | {reversible.PeakMiB:F1} | {standard.Milliseconds:F0} | {reversible.Milliseconds:F0} |");
            Console.Error.WriteLine($"depth {depth}: standard {standard.PeakMiB:F1} MiB, reversible {reversible.PeakMiB:F1} MiB");
        }
        return report.ToString();
    }

    private sealed record Measured(long Parameters, double PeakMiB, double Milliseconds);

    private static Measured Child(ReformerMemorySettings s, int depth, string mode) =>
        RunChild($"{depth}:{mode}", ["reformer-memory", "--one", $"{depth}:{mode}", "--batch", $"{s.Batch}", "--length", $"{s.Length}", "--model-dim", $"{s.ModelDim}", "--mlp-dim", $"{s.MlpDim}"]);

    // Child: "PARAMETERS PEAK_MIB STEP_MS".
    private static string MeasureOne(ReformerMemorySettings s)
    {
        var spec = s.One!.Split(':');
        if (spec.Length != 2 || !int.TryParse(spec[0], CultureInfo.InvariantCulture, out var depth) || spec[1] is not ("standard" or "reversible"))
            throw new ArgumentException($"--one takes DEPTH:standard or DEPTH:reversible, not '{s.One}'");
        set_num_threads(1);
        using var generator = new Generator(1);
        using var stack = new ReversibleStack(
            Enumerable.Range(0, depth).Select(_ => new ReversibleBlock(
                new Mlp(s.ModelDim, s.MlpDim, MlpActivation.Gelu, useBias: true, generator: generator),
                new Mlp(s.ModelDim, s.MlpDim, MlpActivation.SwiGlu, useBias: false, generator: generator))).ToList(),
            reversible: spec[1] == "reversible");
        var parameters = stack.parameters().Sum(p => p.numel());
        using var x1 = randn(new long[] { s.Batch, s.Length, s.ModelDim }, generator: generator);
        using var x2 = randn(new long[] { s.Batch, s.Length, s.ModelDim }, generator: generator);

        Step(stack, x1, x2); // warm-up: gradients allocated, kernels and thread pools initialised
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
        var before = StatusKiB("VmRSS");
        var watch = Stopwatch.StartNew();
        Step(stack, x1, x2);
        watch.Stop();
        var peak = StatusKiB("VmHWM");
        return string.Create(CultureInfo.InvariantCulture, $"{parameters} {(peak - before) / 1024.0:F1} {watch.Elapsed.TotalMilliseconds:F1}");
    }

    private static void Step(ReversibleStack stack, Tensor x1, Tensor x2)
    {
        using var scope = NewDisposeScope();
        var (y1, y2) = stack.Forward(x1, x2);
        (y1.square().mean() + y2.square().mean()).backward();
        using var noGrad = no_grad();
        foreach (var p in stack.parameters())
        {
            p.sub_(p.grad! * 1e-3); // plain SGD: no optimizer state to blur the activations' share
            p.grad!.zero_();
        }
    }

    private static string MachineLine() => string.Create(CultureInfo.InvariantCulture,
        $"{MachineInfo.CpuModel()}, {MachineInfo.OperatingSystem()}, TorchSharp {MachineInfo.TorchSharpVersion()}, commit {MachineInfo.GitCommit()}, load average {MachineInfo.LoadAverage()?.ToString("F1", CultureInfo.InvariantCulture) ?? "?"}.");

    // The real model: a length table (full vs LSH, 2 reversible layers) and a depth table (standard vs reversible, LSH).
    private static string RunModelSweep(ReformerMemorySettings s)
    {
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"## reformer-memory --sweep model: peak memory of a Reformer training step vs length and depth, {DateTime.UtcNow:yyyy-MM-dd}");
        report.AppendLine();
        report.AppendLine(MachineLine());
        report.AppendLine(CultureInfo.InvariantCulture, $"ReformerModel (byte vocabulary), halves of width {s.ModelDim}, 1 head of 64, MLP hidden {s.MlpDim} in chunks of 1024, output loss in chunks of 1024; LSH: 32 buckets, 2 rounds, chunks of 64. Batch 1; one training step (loss, backward, SGD update) after a warm-up, peak RSS rise, one process per cell, one thread.");
        report.AppendLine();
        report.AppendLine("Length (2 reversible layers):");
        report.AppendLine();
        report.AppendLine("| tokens | full peak (MiB) | LSH peak (MiB) | full step (ms) | LSH step (ms) |");
        report.AppendLine("|---|---|---|---|---|");
        foreach (var length in s.Lengths)
        {
            var full = length <= s.MaxFullLength ? ModelChild(s, "full", length, 2, "reversible") : null;
            var lsh = ModelChild(s, "lsh", length, 2, "reversible");
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {length} | {(full is null ? "not run" : full.PeakMiB.ToString("F1", CultureInfo.InvariantCulture))} | {lsh.PeakMiB:F1} | {(full is null ? "-" : full.Milliseconds.ToString("F0", CultureInfo.InvariantCulture))} | {lsh.Milliseconds:F0} |");
            Console.Error.WriteLine($"length {length}: full {full?.PeakMiB:F1} MiB, LSH {lsh.PeakMiB:F1} MiB");
        }
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"Depth ({s.Length} tokens, LSH attention):");
        report.AppendLine();
        report.AppendLine("| layers | parameters | standard peak (MiB) | reversible peak (MiB) | standard step (ms) | reversible step (ms) |");
        report.AppendLine("|---|---|---|---|---|---|");
        foreach (var depth in s.Depths)
        {
            var standard = ModelChild(s, "lsh", s.Length, depth, "standard");
            var reversible = ModelChild(s, "lsh", s.Length, depth, "reversible");
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {depth} | {standard.Parameters:N0} | {standard.PeakMiB:F1} | {reversible.PeakMiB:F1} | {standard.Milliseconds:F0} | {reversible.Milliseconds:F0} |");
            Console.Error.WriteLine($"depth {depth}: standard {standard.PeakMiB:F1} MiB, reversible {reversible.PeakMiB:F1} MiB");
        }
        return report.ToString();
    }

    private static Measured ModelChild(ReformerMemorySettings s, string attention, int length, int depth, string mode) =>
        RunChild($"{attention}:{length}:{depth}:{mode}", ["reformer-memory", "--one-model", $"{attention}:{length}:{depth}:{mode}", "--model-dim", $"{s.ModelDim}", "--mlp-dim", $"{s.MlpDim}"]);

    private static Measured RunChild(string what, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this program's path"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
            start.ArgumentList.Add(a);
        // A fixed threshold: big blocks are mmapped and unmapped on free, so RSS follows the live tensors.
        start.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the child process");
        var stderr = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd().Trim();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"the {what} child failed: {stderr.Result.Trim()}");
        var parts = output.Split(' ');
        return new Measured(long.Parse(parts[0], CultureInfo.InvariantCulture), double.Parse(parts[1], CultureInfo.InvariantCulture), double.Parse(parts[2], CultureInfo.InvariantCulture));
    }

    // Child of the model sweep: "PARAMETERS PEAK_MIB STEP_MS".
    private static string MeasureModel(ReformerMemorySettings s)
    {
        var spec = s.OneModel!.Split(':');
        if (spec.Length != 4 || spec[0] is not ("full" or "lsh") || !int.TryParse(spec[1], CultureInfo.InvariantCulture, out var length)
            || !int.TryParse(spec[2], CultureInfo.InvariantCulture, out var depth) || spec[3] is not ("standard" or "reversible"))
            throw new ArgumentException($"--one-model takes full|lsh:LENGTH:DEPTH:standard|reversible, not '{s.OneModel}'");
        set_num_threads(1);
        var options = new ReformerOptions
        {
            VocabSize = 258, MaxSequenceLength = length, ModelDim = s.ModelDim, NumLayers = depth, NumHeads = 1, HeadDim = 64, MlpDim = s.MlpDim,
            Attention = spec[0] == "full" ? ReformerAttentionKind.Full : ReformerAttentionKind.Lsh, LshBuckets = 32, LshRounds = 2, LshChunkLength = 64,
            Reversible = spec[3] == "reversible", FfChunkLength = 1024, OutputChunkLength = 1024,
        };
        using var generator = new Generator(1);
        using var model = options.Build(generator: generator);
        model.train();
        var parameters = model.ParameterCount;
        using var tokens = randint(258, new long[] { 1, length + 1 }, generator: generator);
        using var batch = Loom.Data.FeatureBatch.Decoder(tokens.narrow(1, 0, length), tokens.narrow(1, 1, length));

        ModelStep(model, batch); // warm-up
        File.WriteAllText("/proc/self/clear_refs", "5");
        var before = StatusKiB("VmRSS");
        var watch = Stopwatch.StartNew();
        ModelStep(model, batch);
        watch.Stop();
        var peak = StatusKiB("VmHWM");
        return string.Create(CultureInfo.InvariantCulture, $"{parameters} {(peak - before) / 1024.0:F1} {watch.Elapsed.TotalMilliseconds:F1}");
    }

    private static void ModelStep(LanguageModel model, Loom.Data.FeatureBatch batch)
    {
        using var scope = NewDisposeScope();
        model.Loss(batch, zLossWeight: 0).Total.backward();
        using var noGrad = no_grad();
        foreach (var p in model.parameters())
        {
            p.sub_(p.grad! * 1e-3);
            p.grad!.zero_();
        }
    }

    private static long StatusKiB(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }
}
