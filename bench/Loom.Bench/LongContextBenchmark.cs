using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>long-context</c> benchmark.</summary>
internal sealed record LongContextSettings
{
    public IReadOnlyList<int> Lengths { get; init; } = [4096, 8192, 16384, 32768];
    public int WrittenOutUpTo { get; init; } = 8192;
    public int BlockSize { get; init; } = 512;
    public (string Impl, int Length)? One { get; init; }

    public const string Usage = """
        usage: loom-bench long-context [flags]

        Evaluates (no gradients) a tiny decoder (1 layer, d 64, 2 heads of 32, batch 1) on one causal sequence of
        each length, on the CPU, with model.attention_impl = sdpa (libtorch's fused kernel), the written-out scores
        (what sdpa falls back to for a scale or soft-cap, Gemma 2's) and blockwise, and reports the process's peak
        resident memory above what it held before the forward (Linux: VmHWM, reset through /proc/self/clear_refs),
        each in a fresh child process (so that no memory freed by an earlier run is reused unseen) whose large
        allocations glibc maps and unmaps directly (MALLOC_MMAP_THRESHOLD_=131072), with the time. PASS when blockwise's peak grows at most linearly (×2.5 or less per doubling).

          --lengths L,L,…       sequence lengths (default 4096,8192,16384,32768)
          --written-out-up-to N  the quadratic written-out path only up to this length (default 8192: 4 GiB of scores at 32k)
          --block-size N        model.attention_block_size (default 512)
        """;

    public static LongContextSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new LongContextSettings(), (s, flag) => flag.Name switch
    {
        "--lengths" => s with { Lengths = flag.PositiveInts() },
        "--written-out-up-to" => s with { WrittenOutUpTo = flag.NonNegativeInt() },
        "--block-size" => s with { BlockSize = flag.PositiveInt() },
        // Internal: measure one contender at one length in this (fresh) process and print "peak-bytes seconds".
        "--one" => s with { One = (flag.Value(), flag.PositiveInt()) },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>long-context</c> benchmark: does blockwise attention's memory grow linearly with the sequence, where
/// the written-out T×S scores grow quadratically?
/// </summary>
internal static class LongContextBenchmark
{
    public static string Run(LongContextSettings s)
    {
        if (!File.Exists("/proc/self/clear_refs")) throw new InvalidOperationException("long-context measures peak memory through /proc/self/clear_refs: Linux only");
        if (s.One is { } one) return Measure(s, one.Impl, one.Length);
        var rows = new List<(string Name, int Length, double PeakMiB, double Seconds)>();
        foreach (string name in new[] { "sdpa", "written-out", "blockwise" })
        {
            foreach (int length in s.Lengths)
            {
                if (name == "written-out" && length > s.WrittenOutUpTo) continue;
                var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
                // A fixed mmap threshold: glibc's sliding one would serve freed tiles' successors from a growing heap,
                // so that the resident peak measured fragmentation rather than what was live.
                start.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
                foreach (string arg in new[] { "long-context", "--block-size", s.BlockSize.ToString(CultureInfo.InvariantCulture), "--one", name, length.ToString(CultureInfo.InvariantCulture) })
                    start.ArgumentList.Add(arg);
                using var child = Process.Start(start) ?? throw new InvalidOperationException("could not start a measuring child process");
                string output = child.StandardOutput.ReadToEnd().Trim();
                child.WaitForExit();
                if (child.ExitCode != 0) throw new InvalidOperationException($"measuring {name} at {length} tokens failed (exit {child.ExitCode})");
                var parts = output.Split(' ');
                double peak = double.Parse(parts[0], CultureInfo.InvariantCulture) / 1048576.0, seconds = double.Parse(parts[1], CultureInfo.InvariantCulture);
                rows.Add((name, length, peak, seconds));
                Console.Error.WriteLine($"{name} {length}: peak +{peak:F0} MiB, {seconds:F1} s");
            }
        }
        return Report(s, rows);
    }

    private static string Measure(LongContextSettings s, string impl, int length)
    {
        set_num_threads(1);
        var options = new DecoderLmOptions
        {
            VocabSize = 256, ModelDim = 64, NumLayers = 1, NumHeads = 2, NumKvHeads = 2, HeadDim = 32, MlpDim = 128,
            MaxSequenceLength = length, ParallelBlock = false, AttentionBlockSize = s.BlockSize,
        };
        options = impl switch
        {
            "sdpa" => options,
            // QueryPreAttnScalar = head_dim scales as sdpa does, but through the written-out scores.
            "written-out" => options with { QueryPreAttnScalar = options.HeadDim },
            "blockwise" => options with { AttentionImpl = AttentionImpl.Blockwise },
            _ => throw new ArgumentException($"--one {impl}: use sdpa, written-out or blockwise"),
        };
        using var model = options.Build();
        model.eval();
        using var tokens = randint(0, 256, [1, length], generator: new Generator(1));
        using (NewDisposeScope())
        using (no_grad()) model.Forward(tokens.narrow(1, 0, 16), null); // lazy initialisation outside the measurement
        long before = ResetPeak();
        var watch = Stopwatch.StartNew();
        using (NewDisposeScope())
        using (no_grad()) model.Forward(tokens, null);
        watch.Stop();
        return string.Create(CultureInfo.InvariantCulture, $"{PeakBytes() - before} {watch.Elapsed.TotalSeconds}\n");
    }

    private static string Report(LongContextSettings s, List<(string Name, int Length, double PeakMiB, double Seconds)> rows)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(c, $"CPU {MachineInfo.CpuModel()}, {MachineInfo.OperatingSystem()}, TorchSharp {MachineInfo.TorchSharpVersion()}, commit {MachineInfo.GitCommit()}, one thread, block {s.BlockSize}");
        text.AppendLine();
        text.AppendLine("| attention | tokens | peak memory above the model | time |");
        text.AppendLine("|---|---|---|---|");
        foreach (var r in rows) text.AppendLine(c, $"| {r.Name} | {r.Length:N0} | {r.PeakMiB:F0} MiB | {r.Seconds:F1} s |");
        var blockwise = rows.Where(r => r.Name == "blockwise").OrderBy(r => r.Length).ToList();
        bool linear = blockwise.Zip(blockwise.Skip(1)).All(p => p.Second.PeakMiB <= Math.Max(1, p.First.PeakMiB) * 2.5 * p.Second.Length / (2.0 * p.First.Length));
        text.AppendLine();
        text.AppendLine(linear ? "PASS: blockwise attention's peak memory grows at most linearly with the length." : "FAIL: blockwise attention's peak memory grows faster than linearly.");
        return text.ToString();
    }

    /// <summary>Resets the kernel's peak-RSS mark to the current RSS (writing 5 to clear_refs) and returns that RSS.</summary>
    private static long ResetPeak()
    {
        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5");
        return Status("VmRSS:");
    }

    private static long PeakBytes() => Status("VmHWM:");

    private static long Status(string key)
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key, StringComparison.Ordinal));
        return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024; // kB
    }
}
