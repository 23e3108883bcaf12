using System.Globalization;
using System.Text;
using Loom.Core;
using Loom.Data.Images;
using Loom.Data.Sources;
using Loom.Models;
using Loom.Models.Vision;
using Loom.Training;
using Loom.Training.Evaluation;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>sasa-vs-conv</c> benchmark.</summary>
internal sealed record SasaSettings
{
    public long Steps { get; init; } = 60;
    public long Seed { get; init; }
    public int Threads { get; init; } = 1;
    public string Device { get; init; } = "cpu";
    public string? RunDir { get; init; }

    public const string Usage = """
        usage: loom-bench sasa-vs-conv [flags]

        Trains the sasa-fashion preset (stand-alone local self-attention with the spatially-aware attention stem)
        and its convolutional twin (the same network with k×k convolutions) on fashion_mnist with the same budget
        (configs/runs/sasa-fashion.json and conv-fashion.json: steps, batch, AdamW, cosine schedule, seed), one after
        the other through the trainer, then scores both on all 10,000 test images. Prints parameters, FLOPs per
        image, validation and test accuracy and the training-time ratio, and whether attention matched convolution
        (test accuracy within 0.5 points or better) with no more parameters (the paper's claim).

          --steps N     training steps of each network (default 60, what fitted the shared 2-core development machine)
          --seed N      weights and batch order (default 0)
          --threads N   libtorch CPU threads (default 1)
          --device D    cpu (default), cuda, cuda:N or auto
          --run-dir D   keep the two runs under D (default: a temporary folder, deleted)
        """;

    public static SasaSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new SasaSettings(), (s, flag) => flag.Name switch
    {
        "--steps" => s with { Steps = Math.Max(1, flag.NonNegativeLong()) },
        "--seed" => s with { Seed = flag.NonNegativeLong() },
        "--threads" => s with { Threads = (int)Math.Max(1, flag.NonNegativeLong()) },
        "--device" => s with { Device = flag.Value() },
        "--run-dir" => s with { RunDir = flag.Value() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>sasa-vs-conv</c> benchmark (Ramachandran et al. 2019, "Stand-Alone Self-Attention in Vision Models"): does a
/// network whose spatial layers are local self-attention match its convolutional twin with fewer parameters? Both
/// train through the trainer exactly as <c>loom train -c sasa-fashion</c> / <c>-c conv-fashion</c> run them.
/// </summary>
internal static class SasaBenchmark
{
    private sealed record Outcome(string Name, long Parameters, long Flops, double Validation, double Test, double TestLoss, double Seconds);

    public static string Run(SasaSettings s)
    {
        set_num_threads(s.Threads);
        string root = s.RunDir ?? Path.Combine(Path.GetTempPath(), $"loom-bench-sasa-{Environment.ProcessId}");
        double? loadBefore = MachineInfo.LoadAverage();
        try
        {
            var test = FashionMnist.Load(progress: new Progress<string>(m => Console.Error.WriteLine(m))).Test;
            var outcomes = new[] { "sasa-fashion", "conv-fashion" }.Select(run => Train(run, s, test, Path.Combine(root, run))).ToList();
            return Report(s, outcomes, (loadBefore, MachineInfo.LoadAverage()));
        }
        finally
        {
            if (s.RunDir is null && Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static Outcome Train(string runFile, SasaSettings s, IReadOnlyList<LabeledImage> test, string runDir)
    {
        var config = RunConfigLoader.Load(runFile, null, [$"training.steps={s.Steps}", $"training.warmup_steps={Math.Min(30, s.Steps / 10)}", $"training.eval_every={s.Steps}", $"training.seed={s.Seed}", $"device={s.Device}", "training.checkpoint_every=0"],
            ModelPresets.DefaultConfigsDirectory);
        var device = Devices.Resolve(config.Device);
        var data = TrainingDataLoader.Load(config.Data, config.Training, new Progress<string>(m => Console.Error.WriteLine(m)), layout: config.Model.FeatureLayout);
        if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
        using var trainer = new Trainer(config, data, runDir, device);
        var model = (ImageClassifier)trainer.Model;
        Console.Error.WriteLine($"sasa-vs-conv: training {runFile} ({model.ParameterCount:N0} parameters) for {s.Steps} steps");
        var result = trainer.Run();
        var validation = JsonlMetricSink.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Last(e => e.Split == MetricEvent.ValidationSplit).Metrics!["accuracy"];
        var scored = ImageEvaluator.Evaluate(model, new ImageBatcher(test, 28, 28, config.Training.BatchSize, seed: 0), device);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sasa-vs-conv: {runFile} test accuracy {scored.Accuracy:P2} over {scored.Images} images, {result.ElapsedSeconds:F0} s"));
        return new Outcome(runFile, model.ParameterCount, model.ForwardFlopsPerImage, validation, scored.Accuracy, scored.Loss, result.ElapsedSeconds);
    }

    private static string Report(SasaSettings s, List<Outcome> outcomes, (double? Before, double? After) load)
    {
        var text = new StringBuilder();
        void Line(string line) => text.AppendLine(line);
        var (attention, conv) = (outcomes[0], outcomes[1]);
        bool fewer = attention.Parameters <= conv.Parameters;
        bool matches = attention.Test >= conv.Test - 0.005;
        Line($"## sasa-vs-conv: stand-alone self-attention against its convolutional twin on Fashion-MNIST, {s.Steps} steps each");
        Line("");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores, {MachineInfo.OperatingSystem()}; {s.Threads} libtorch thread(s); load average {Fmt(load.Before)} -> {Fmt(load.After)}");
        Line($"- commit: {MachineInfo.GitCommit()}, device {s.Device}, seed {s.Seed}; configs/runs/sasa-fashion.json and conv-fashion.json (batch 64, AdamW 3e-3, cosine, {Math.Min(30, s.Steps / 10)} warm-up steps)");
        Line("- FLOPs: forward multiply-adds × 2 per image, counted analytically (norms, softmax and pooling left out)");
        Line("");
        Line("| network | parameters | forward MFLOPs / image | validation accuracy (first 1,280) | test accuracy (10k) | test loss | train s |");
        Line("|---|---|---|---|---|---|---|");
        foreach (var o in outcomes)
            Line(string.Create(CultureInfo.InvariantCulture,
                $"| {o.Name} | {o.Parameters:N0} | {o.Flops / 1e6:F2} | {o.Validation:P2} | {o.Test:P2} | {o.TestLoss:F4} | {o.Seconds:F0} |"));
        Line("");
        Line(string.Create(CultureInfo.InvariantCulture,
            $"attention / convolution: parameters {attention.Parameters / (double)conv.Parameters:F2}x, FLOPs {attention.Flops / (double)conv.Flops:F2}x, training time {attention.Seconds / conv.Seconds:F2}x; test accuracy {100 * (attention.Test - conv.Test):+0.00;-0.00} points"));
        Line("");
        Line($"{(fewer && matches ? "HOLDS" : "DOES NOT HOLD")}: attention has no more parameters: {fewer}; its test accuracy is within 0.5 points of convolution's or better: {matches}");
        return text.ToString();
    }

    private static string Fmt(double? v) => v is double d ? d.ToString("F3", CultureInfo.InvariantCulture) : "n/a";
}
