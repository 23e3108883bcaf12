using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>int8-linear</c> benchmark.</summary>
internal sealed record Int8LinearSettings
{
    public int InFeatures { get; init; } = 512;
    public int OutFeatures { get; init; } = 1536;
    public int Threads { get; init; } = 1;
    public int Repetitions { get; init; } = 9;
    public IReadOnlyList<int> Rows { get; init; } = [1, 2, 4, 8, 16, 32, 64, 128];

    public const string Usage = """
        usage: loom-bench int8-linear [flags]

        One linear layer y = x Wᵀ on the CPU, four ways in one run: float32 W (libtorch's sgemm), int8 W widened to
        float before the matmul (Int8Weights.WidenedLinear, Loom's old path and today's prefill path), int8 W read
        directly by Loom's AVX-512 kernel (Int8Weights.DirectLinear), and int8 W by libtorch's own
        _weight_int8pack_mm (reached through its AOT Inductor C shim). Median microseconds a call over the
        repetitions, for each number of rows of x; it sets Int8Weights.DirectKernelMaxRows.

          --in N           input features (default 512)
          --out N          output features (default 1536)
          --rows A,B,...   rows of x (default 1,2,4,8,16,32,64,128)
          --threads N      libtorch threads (default 1)
          --repetitions N  timed rounds, each timing every contender once; medians reported (default 9)
        """;

    public static Int8LinearSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new Int8LinearSettings(), (s, flag) => flag.Name switch
    {
        "--in" => s with { InFeatures = flag.PositiveInt() },
        "--out" => s with { OutFeatures = flag.PositiveInt() },
        "--rows" => s with { Rows = flag.Value().Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToList() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--repetitions" => s with { Repetitions = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>int8-linear</c> benchmark: float, widened int8 and direct int8 linears at each row count.</summary>
internal static class Int8LinearBenchmark
{
    private static readonly TimeSpan Target = TimeSpan.FromMilliseconds(40); // per timed repetition

    public static string Run(Int8LinearSettings s)
    {
        set_num_threads(s.Threads);
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator(0);
        var w = randn(new long[] { s.OutFeatures, s.InFeatures }, generator: generator) / Math.Sqrt(s.InFeatures); // (out, in)
        var (values, scales) = Int8Weights.Quantize(w);
        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"## int8-linear: one {s.InFeatures} -> {s.OutFeatures} linear, float32 vs int8 widened vs int8 direct, {s.Threads} thread(s)"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {MachineInfo.LoadAverage():F2}; commit {MachineInfo.GitCommit()}; medians of {s.Repetitions} interleaved rounds"));
        text.AppendLine();
        text.AppendLine("| rows | float32 µs | int8 widened µs | int8 Loom kernel µs | int8 libtorch _weight_int8pack_mm µs | Loom kernel speed / float32's (median of rounds) | Linear takes |");
        text.AppendLine("|---|---|---|---|---|---|---|");
        foreach (int rows in s.Rows)
        {
            Console.Error.WriteLine($"int8-linear: {rows} rows");
            var x = randn(new long[] { rows, s.InFeatures }, generator: generator); // (M, in)
            var contenders = new List<Func<Tensor>>
            {
                () => nn.functional.linear(x, w),
                () => Int8Weights.WidenedLinear(x, values, scales),
                () => Int8Weights.DirectLinear(x, values, scales),
            };
            if (LibTorchInt8MatMul.IsAvailable) contenders.Add(() => LibTorchInt8MatMul.Multiply(x, values, scales));
            var (medians, ratio) = Interleaved(contenders, s.Repetitions);
            string libtorch = LibTorchInt8MatMul.IsAvailable ? medians[3].ToString("F1", CultureInfo.InvariantCulture) : "(not exported)";
            string takes = Int8Weights.UsesDirectKernel(x, values) ? "Loom kernel" : "widened";
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {rows} | {medians[0]:F1} | {medians[1]:F1} | {medians[2]:F1} | {libtorch} | {ratio:F2}x | {takes} |"));
        }
        return text.ToString();
    }

    /// <summary>
    /// Median microseconds a call of each contender, and the median over rounds of float32's time over the Loom
    /// kernel's (contender 0 over contender 2). Each round times every contender back to back, one loop of about
    /// <see cref="Target"/> each, so that a busy machine slows them alike within a round.
    /// </summary>
    private static (double[] Medians, double Ratio) Interleaved(IReadOnlyList<Func<Tensor>> contenders, int rounds)
    {
        static void Once(Func<Tensor> call)
        {
            using var scope = NewDisposeScope();
            _ = call();
        }
        var loops = new int[contenders.Count];
        var clock = new Stopwatch();
        for (int c = 0; c < contenders.Count; c++)
        {
            for (int i = 0; i < 3; i++) Once(contenders[c]); // warm-up
            clock.Restart();
            int calls = 0;
            while (clock.Elapsed < Target / 4) { Once(contenders[c]); calls++; }
            loops[c] = Math.Max(1, (int)(calls * Target.TotalSeconds / clock.Elapsed.TotalSeconds)); // calls per Target
        }
        var times = new double[contenders.Count][];
        for (int c = 0; c < contenders.Count; c++) times[c] = new double[rounds];
        var ratios = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            for (int c = 0; c < contenders.Count; c++)
            {
                clock.Restart();
                for (int i = 0; i < loops[c]; i++) Once(contenders[c]);
                times[c][r] = clock.Elapsed.TotalMicroseconds / loops[c];
            }
            ratios[r] = times[0][r] / times[2][r];
        }
        return (times.Select(Median).ToArray(), Median(ratios));
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
