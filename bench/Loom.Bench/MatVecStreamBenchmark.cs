using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Models.Kernels;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>matvec-stream</c> benchmark.</summary>
internal sealed record MatVecStreamSettings
{
    public int Layers { get; init; } = 8;
    public int ModelDim { get; init; } = 512;
    public int MlpDim { get; init; } = 1376;
    public int Vocabulary { get; init; } = 258;
    public IReadOnlyList<int> Rows { get; init; } = [1, 2, 4, 8, 16];
    public int Threads { get; init; } = 1;
    public int Repetitions { get; init; } = 7;

    public const string Usage = """
        usage: loom-bench matvec-stream [flags]

        The matmuls of one decode step of a Llama-shaped decoder (per layer Q, K, V, O, gate, up, down, then an untied
        head; the issue's 25.6M shape by default: 102 MB of float32 weights, far larger than the caches), so each pass
        streams every weight from memory: libtorch's nn.functional.linear (oneMKL SGEMV/SGEMM) against Loom's
        Float32Linear.DirectLinear, for each number of rows of input. Median milliseconds a pass over interleaved rounds,
        and the rate at which the weights were read.

          --layers N       decoder layers (default 8)
          --dim N          model width (default 512)
          --mlp N          SwiGLU hidden units (default 1376)
          --vocab N        head rows (default 258)
          --rows A,B,...   rows of input (default 1,2,4,8,16)
          --threads N      threads, both contenders (default 1)
          --repetitions N  timed rounds (default 7)
        """;

    public static MatVecStreamSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new MatVecStreamSettings(), (s, flag) => flag.Name switch
    {
        "--layers" => s with { Layers = flag.PositiveInt() },
        "--dim" => s with { ModelDim = flag.PositiveInt() },
        "--mlp" => s with { MlpDim = flag.PositiveInt() },
        "--vocab" => s with { Vocabulary = flag.PositiveInt() },
        "--rows" => s with { Rows = flag.PositiveInts() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--repetitions" => s with { Repetitions = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>matvec-stream</c> benchmark: a decode step's matmuls, libtorch against Loom's float kernel.</summary>
internal static class MatVecStreamBenchmark
{
    private const int PassesPerRound = 10;

    public static string Run(MatVecStreamSettings s)
    {
        set_num_threads(s.Threads);
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator(0);
        var shapes = new List<(int Out, int In)>();
        for (int l = 0; l < s.Layers; l++)
        {
            shapes.AddRange(Enumerable.Repeat((s.ModelDim, s.ModelDim), 4));                             // Q, K, V, O
            shapes.AddRange([(s.MlpDim, s.ModelDim), (s.MlpDim, s.ModelDim), (s.ModelDim, s.MlpDim)]);  // gate, up, down
        }
        shapes.Add((s.Vocabulary, s.ModelDim));                                                          // head
        var kernels = shapes.Select(p => randn(new long[] { p.Out, p.In }, generator: generator) / Math.Sqrt(p.In)).ToArray(); // (out, in)
        double megabytes = shapes.Sum(p => (double)p.Out * p.In) * 4 / 1e6;

        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"## matvec-stream: a decode step's {shapes.Count} matmuls ({megabytes:F1} MB of float32 weights), libtorch against Loom's kernel, {s.Threads} thread(s)"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {MachineInfo.LoadAverage():F2}; commit {MachineInfo.GitCommit()}; medians of {s.Repetitions} interleaved rounds of {PassesPerRound} passes"));
        text.AppendLine();
        text.AppendLine("| rows | libtorch ms / pass | libtorch GB/s | Loom kernel ms / pass | Loom kernel GB/s | Loom / libtorch speed | max abs difference | Float32Linear takes |");
        text.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (int rows in s.Rows)
        {
            Console.Error.WriteLine($"matvec-stream: {rows} rows");
            var inputs = kernels.Select(w => randn(new long[] { rows, w.shape[1] }, generator: generator)).ToArray(); // (M, in)
            double difference = 0;
            for (int i = 0; i < kernels.Length; i++)
            {
                using var scope = NewDisposeScope();
                var expected = nn.functional.linear(inputs[i], kernels[i]);
                difference = Math.Max(difference, (Float32Linear.DirectLinear(inputs[i], kernels[i]) - expected).abs().max().item<float>());
            }
            var passes = new Action[]
            {
                () => { for (int i = 0; i < kernels.Length; i++) nn.functional.linear(inputs[i], kernels[i]); },
                () => { for (int i = 0; i < kernels.Length; i++) Float32Linear.DirectLinear(inputs[i], kernels[i]); },
            };
            var times = new List<double>[] { [], [] };
            var clock = new Stopwatch();
            for (int round = 0; round <= s.Repetitions; round++) // round 0 warms up
            {
                for (int c = 0; c < passes.Length; c++)
                {
                    clock.Restart();
                    for (int p = 0; p < PassesPerRound; p++)
                    {
                        using var scope = NewDisposeScope();
                        passes[c]();
                    }
                    if (round > 0) times[c].Add(clock.Elapsed.TotalMilliseconds / PassesPerRound);
                }
            }
            double libtorch = Median(times[0]), loom = Median(times[1]);
            string takes = Float32Linear.UsesDirectKernel(inputs[0], kernels[0]) ? "Loom kernel" : "libtorch";
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {rows} | {libtorch:F3} | {megabytes / libtorch:F1} | {loom:F3} | {megabytes / loom:F1} | {libtorch / loom:F2}x | {difference:G2} | {takes} |"));
        }
        return text.ToString();
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
