using System.Globalization;
using System.Text;
using Loom.Core;
using Loom.Data;
using Loom.Models;
using Loom.Models.Layers;
using Loom.Training;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>moe</c> benchmark.</summary>
internal sealed record MoeSettings
{
    public long Steps { get; init; } = 600;
    public long Seed { get; init; }
    public string Device { get; init; } = "cpu";
    public string? RunDir { get; init; }

    public const string Usage = """
        usage: loom-bench moe [flags]

        Trains the dense tiny preset and tiny-moe (8 experts, top-2, equal active parameters) with the README
        demo's recipe (configs/runs/demo.json: Austen, Persuasion held out) for the same steps and seed, one after
        the other in this run, and reports held-out loss, throughput, and each MoE layer's expert loads on
        held-out text at the end. PASS when the MoE's held-out loss is lower and every load lies in [0.5/E, 2/E].

          --steps N     training steps of each model (default 600, the demo's)
          --seed N      weights and batch order (default 0)
          --device D    cpu (default), cuda, cuda:N or auto
          --run-dir D   keep the two runs under D (default: a temporary folder, deleted)
        """;

    public static MoeSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new MoeSettings(), (s, flag) => flag.Name switch
    {
        "--steps" => s with { Steps = Math.Max(1, flag.NonNegativeLong()) },
        "--seed" => s with { Seed = flag.NonNegativeLong() },
        "--device" => s with { Device = flag.Value() },
        "--run-dir" => s with { RunDir = flag.Value() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>moe</c> benchmark: does a mixture of experts learn more per step than the dense model with the
/// same active parameters (Switch Transformer's claim, Fedus et al. 2021, Fig. 1), on the same data, steps and
/// seed? Both runs go through the trainer exactly as <c>loom train</c> runs them.
/// </summary>
internal static class MoeBenchmark
{
    private record Outcome(string Preset, long Parameters, long Active, double HeldOut, double BitsPerByte, double TokensPerSecond, double Seconds,
        double[][]? LayerLoads, double? Dropped);

    public static string Run(MoeSettings s)
    {
        string root = s.RunDir ?? Path.Combine(Path.GetTempPath(), $"loom-bench-moe-{Environment.ProcessId}");
        double? loadBefore = MachineInfo.LoadAverage();
        try
        {
            var outcomes = new[] { "tiny", "tiny-moe" }.Select(preset => Train(preset, s, Path.Combine(root, preset))).ToList();
            return Report(s, outcomes, (loadBefore, MachineInfo.LoadAverage()));
        }
        finally
        {
            if (s.RunDir is null && Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static Outcome Train(string preset, MoeSettings s, string runDir)
    {
        var config = RunConfigLoader.Load("demo", preset, [$"training.steps={s.Steps}", $"training.warmup_steps={Math.Min(50, s.Steps / 10)}", $"training.seed={s.Seed}", $"device={s.Device}", "training.checkpoint_every=0"],
            ModelPresets.DefaultConfigsDirectory);
        var device = Devices.Resolve(config.Device);
        var data = TrainingDataLoader.Load(config.Data, config.Training, new Progress<string>(m => Console.Error.WriteLine(m)), layout: config.Model.FeatureLayout);
        if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
        using var trainer = new Trainer(config, data, runDir, device);
        Console.Error.WriteLine($"moe: training {preset} ({trainer.Model.ParameterCount:N0} parameters, {trainer.Model.ActiveParameterCount:N0} active) for {s.Steps} steps");
        var result = trainer.Run();
        var events = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl"));
        var validation = events.Last(e => e.Split == MetricEvent.ValidationSplit);
        double tokensPerSecond = events.Where(e => e.Split == MetricEvent.TrainSplit && e.TokensPerSecond is not null).Select(e => e.TokensPerSecond!.Value).DefaultIfEmpty(0).Average();
        var lastTrain = events.Last(e => e.Split == MetricEvent.TrainSplit);
        return new Outcome(preset, trainer.Model.ParameterCount, trainer.Model.ActiveParameterCount, validation.Loss, validation.BitsPerByte ?? double.NaN,
            tokensPerSecond, result.ElapsedSeconds, HeldOutLoads(trainer.Model, data, device), lastTrain.DroppedFraction);
    }

    /// <summary>Each MoE layer's expert loads over the first held-out batches, as the trained model routes them (null for a dense model).</summary>
    private static double[][]? HeldOutLoads(LanguageModel model, TrainingData data, Device device)
    {
        if (!model.modules().OfType<MoeMlp>().Any() || data.Validation is null) return null;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        Tensor? sum = null;
        int batches = 0;
        foreach (var (inputs, targets) in data.Validation.EvaluationBatches(8))
        {
            using var batch = FeatureBatch.Decoder(inputs.to(device), targets.to(device));
            var byLayer = model.Forward(batch).Statistics["expert_load_by_layer"]; // (L_moe, E)
            sum = sum is null ? byLayer.clone() : sum + byLayer;
            batches++;
        }
        var mean = (sum! / batches).cpu().to(float64);                              // (L_moe, E)
        return [.. Enumerable.Range(0, (int)mean.shape[0]).Select(l => mean[l].data<double>().ToArray())];
    }

    private static string Report(MoeSettings s, List<Outcome> outcomes, (double? Before, double? After) load)
    {
        var text = new StringBuilder();
        void Line(string line) => text.AppendLine(line);
        var (dense, moe) = (outcomes[0], outcomes[1]);
        int experts = moe.LayerLoads?[0].Length ?? 0;
        double low = 0.5 / experts, high = 2.0 / experts;
        bool lossOk = moe.HeldOut < dense.HeldOut;
        bool loadsOk = moe.LayerLoads is not null && moe.LayerLoads.All(l => l.All(f => f >= low && f <= high));
        Line($"## moe: tiny-moe (8 experts, top-2) against dense tiny at equal active parameters, {s.Steps} steps each");
        Line("");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores, {MachineInfo.OperatingSystem()}; load average {Fmt(load.Before)} -> {Fmt(load.After)}");
        Line($"- commit: {MachineInfo.GitCommit()}, device {s.Device}, seed {s.Seed}; data, schedule and batches of configs/runs/demo.json");
        Line("");
        Line("| model | parameters | active | held-out loss (nats/byte) | bits/byte | tokens/s | train s |");
        Line("|---|---|---|---|---|---|---|");
        foreach (var o in outcomes)
            Line(string.Create(CultureInfo.InvariantCulture, $"| {o.Preset} | {o.Parameters:N0} | {o.Active:N0} | {o.HeldOut:F4} | {o.BitsPerByte:F4} | {o.TokensPerSecond:N0} | {o.Seconds:F0} |"));
        Line("");
        Line(string.Create(CultureInfo.InvariantCulture, $"MoE held-out loss − dense: {moe.HeldOut - dense.HeldOut:+0.0000;-0.0000} nats/byte; MoE throughput / dense: {moe.TokensPerSecond / dense.TokensPerSecond:F2}x; dropped fraction in the last logging interval: {Fmt(moe.Dropped)}"));
        Line("");
        if (moe.LayerLoads is not null)
        {
            Line($"Expert loads on held-out text at the end (fraction of routed assignments; bounds [{low:F4}, {high:F4}] = [0.5/E, 2/E]):");
            Line("");
            Line("| layer | " + string.Join(" | ", Enumerable.Range(0, experts).Select(e => $"e{e}")) + " | min | max |");
            Line("|---|" + string.Concat(Enumerable.Repeat("---|", experts + 2)));
            for (int l = 0; l < moe.LayerLoads.Length; l++)
                Line($"| {l} | " + string.Join(" | ", moe.LayerLoads[l].Select(f => f.ToString("F3", CultureInfo.InvariantCulture)))
                     + string.Create(CultureInfo.InvariantCulture, $" | {moe.LayerLoads[l].Min():F3} | {moe.LayerLoads[l].Max():F3} |"));
            Line("");
        }
        Line($"{(lossOk && loadsOk ? "PASS" : "FAIL")}: MoE loss lower: {lossOk}; every expert load within [0.5/E, 2/E]: {loadsOk}");
        return text.ToString();
    }

    private static string Fmt(double? v) => v is double d ? d.ToString("F3", CultureInfo.InvariantCulture) : "n/a";
}
