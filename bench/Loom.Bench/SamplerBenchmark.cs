using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Core;
using Loom.Data;
using Loom.Inference;
using Loom.Inference.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Settings of <c>loom-bench sampler</c>.</summary>
internal sealed record SamplerSettings
{
    /// <summary>Rows per step (running sequences).</summary>
    public IReadOnlyList<int> Rows { get; init; } = [1, 16, 64];

    /// <summary>Vocabulary sizes.</summary>
    public IReadOnlyList<int> Vocab { get; init; } = [258, 32000];

    /// <summary>Steps measured per configuration and sampler.</summary>
    public int Steps { get; init; } = 50;

    public string Device { get; init; } = "cpu";

    public int? Threads { get; init; }

    public const string Usage = """
        loom-bench sampler: one engine step's sampling, every row at once on the device (BatchSampler) against one row at a
        time with a host copy each (RequestSampler, the reference), interleaved in the same process, same logits and seeds.

          --rows LIST     rows per step (default 1,16,64)
          --vocab LIST    vocabulary sizes (default 258,32000)
          --steps N       steps per configuration (default 50)
          --device D      cpu (default), cuda, cuda:N or auto
          --threads N     libtorch intra-op threads
        """;

    public static SamplerSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new SamplerSettings(), (s, flag) => flag.Name switch
    {
        "--rows" => s with { Rows = flag.PositiveInts() },
        "--vocab" => s with { Vocab = flag.PositiveInts() },
        "--steps" => s with { Steps = flag.PositiveInt() },
        "--device" => s with { Device = flag.Value() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>sampler</c> benchmark: per step, the time to choose the next token of B rows from (B, V) logits, for greedy rows
/// and for seeded top-p rows, batched against per row. The two are interleaved step by step so machine noise hits both.
/// </summary>
internal static class SamplerBenchmark
{
    /// <summary>A vocabulary of a given size whose ids decode to nothing (sampling never decodes without log-probs).</summary>
    private sealed class SizedVocabulary(int size) : IVocabulary
    {
        public string Name => $"sized-{size}";
        public int Size => size;
        public int EosId => size - 2;
        public int PadId => size - 1;
        public int[] Encode(string text) => [];
        public string Decode(ReadOnlySpan<int> ids) => "";
    }

    public static string Run(SamplerSettings s)
    {
        if (s.Threads is int threads) torch.set_num_threads(threads);
        var device = Devices.Resolve(s.Device);
        var report = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        report.AppendLine(inv, $"loom-bench sampler on {device}, {s.Steps} steps per cell, load before {MachineInfo.LoadAverage()?.ToString("F2", inv) ?? "?"}");
        report.AppendLine("| rows | vocab | sampling | per row ms/step | batched ms/step | speed-up |");
        report.AppendLine("|---:|---:|---|---:|---:|---:|");
        foreach (int vocab in s.Vocab)
            foreach (int rows in s.Rows)
                foreach (bool greedy in new[] { true, false })
                {
                    var vocabulary = new SizedVocabulary(vocab);
                    var options = greedy ? new SamplingOptions { Temperature = 0 } : new SamplingOptions { Temperature = 0.8, TopP = 0.95 };
                    var perRow = Enumerable.Range(0, rows).Select(i => new RequestSampler(options with { Seed = i }, vocabulary)).ToList();
                    var batched = Enumerable.Range(0, rows).Select(i => new RequestSampler(options with { Seed = i }, vocabulary)).ToList();
                    using var generator = new Generator(7);
                    double perRowMs = 0, batchedMs = 0;
                    for (int step = -3; step < s.Steps; step++) // 3 warm-up steps
                    {
                        using var scope = NewDisposeScope();
                        var logits = (randn(rows, vocab, generator: generator) * 3).to(device); // (B, V)
                        var clock = Stopwatch.StartNew();
                        for (int b = 0; b < rows; b++) perRow[b].Next(logits[b]);
                        double a = clock.Elapsed.TotalMilliseconds;
                        clock.Restart();
                        BatchSampler.Sample(logits, batched, vocabulary);
                        double c = clock.Elapsed.TotalMilliseconds;
                        if (step >= 0) (perRowMs, batchedMs) = (perRowMs + a, batchedMs + c);
                    }
                    foreach (var sampler in perRow.Concat(batched)) sampler.Dispose();
                    report.AppendLine(inv, $"| {rows} | {vocab} | {(greedy ? "greedy" : "top-p 0.95, seeded")} | {perRowMs / s.Steps:F3} | {batchedMs / s.Steps:F3} | {perRowMs / batchedMs:F2}x |");
                }
        report.AppendLine(inv, $"load after {MachineInfo.LoadAverage()?.ToString("F2", inv) ?? "?"}");
        return report.ToString();
    }
}
