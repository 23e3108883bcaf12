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
    public int Repetitions { get; init; } = 5;
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
          --repetitions N  timed repetitions per cell, median reported (default 5)
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
            $"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {MachineInfo.LoadAverage():F2}; commit {MachineInfo.GitCommit()}; median of {s.Repetitions}"));
        text.AppendLine();
        text.AppendLine("| rows | float32 µs | int8 widened µs | int8 Loom kernel µs | int8 libtorch _weight_int8pack_mm µs | Loom kernel / float32 speed | Linear takes |");
        text.AppendLine("|---|---|---|---|---|---|---|");
        foreach (int rows in s.Rows)
        {
            Console.Error.WriteLine($"int8-linear: {rows} rows");
            var x = randn(new long[] { rows, s.InFeatures }, generator: generator); // (M, in)
            double f = Median(() => nn.functional.linear(x, w), s.Repetitions);
            double widened = Median(() => Int8Weights.WidenedLinear(x, values, scales), s.Repetitions);
            double direct = Median(() => Int8Weights.DirectLinear(x, values, scales), s.Repetitions);
            string libtorch = LibTorchInt8MatMul.IsAvailable
                ? Median(() => LibTorchInt8MatMul.Multiply(x, values, scales), s.Repetitions).ToString("F1", CultureInfo.InvariantCulture)
                : "(not exported)";
            string takes = Int8Weights.UsesDirectKernel(x, values) ? "Loom kernel" : "widened";
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {rows} | {f:F1} | {widened:F1} | {direct:F1} | {libtorch} | {f / direct:F2}x | {takes} |"));
        }
        return text.ToString();
    }

    /// <summary>Median microseconds a call over <paramref name="repetitions"/> timed loops, each about <see cref="Target"/> long.</summary>
    private static double Median(Func<Tensor> call, int repetitions)
    {
        void Once()
        {
            using var scope = NewDisposeScope();
            _ = call();
        }
        for (int i = 0; i < 3; i++) Once(); // warm-up
        var clock = Stopwatch.StartNew();
        int calls = 0;
        while (clock.Elapsed < Target / 4) { Once(); calls++; }
        int loop = Math.Max(1, (int)(calls * Target.TotalSeconds / clock.Elapsed.TotalSeconds)); // calls per Target
        var times = new double[repetitions];
        for (int r = 0; r < repetitions; r++)
        {
            clock.Restart();
            for (int i = 0; i < loop; i++) Once();
            times[r] = clock.Elapsed.TotalMicroseconds / loop;
        }
        Array.Sort(times);
        return times[repetitions / 2];
    }
}
