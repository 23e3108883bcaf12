using System.Globalization;
using System.Text;
using Loom.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>
/// The <c>train-step</c> benchmark: one full training step (zero grad, forward + loss, backward, global-norm
/// clip, AdamW update) of the same GPT, once through Loom and once written directly against TorchSharp.
/// The contenders alternate step by step (A B, B A, A B, ...) so that drift in the machine's speed (another
/// process, thermal or frequency changes) lands on both alike; the ratio of their medians is the result.
/// </summary>
internal static class TrainStepBenchmark
{
    // Distinct batches cycled through; random tokens cost the same as text, and a handful avoids
    // measuring one batch's cache state.
    private const int DistinctBatches = 8;

    public static string Run(TrainStepSettings s)
    {
        if (s.Threads is int threads) torch.set_num_threads(threads);
        var device = Devices.Resolve(s.Device);
        bool syncPhases = device.type == DeviceType.CPU || s.Phases;
        double? loadBefore = MachineInfo.LoadAverage();

        using var scope = NewDisposeScope(); // batches and any setup temporaries live for the whole run
        torch.manual_seed(s.Seed);
        using var loom = new LoomContender(s, device);
        using var plain = new PlainContender(
            new PlainGptConfig(s.Vocab, s.Seq, s.Layers, s.Heads, s.HeadDim, s.Dim, s.MlpDim, TrainStepSettings.NormEpsilon, s.FusedQkv), device);
        plain.Model.CopyFromLoom(loom.NamedParameters(), s.Layers);
        if (loom.ParameterCount != plain.ParameterCount)
            throw new InvalidOperationException($"parameter counts differ: Loom {loom.ParameterCount:N0}, plain {plain.ParameterCount:N0}; the architectures do not match");

        var batches = Enumerable.Range(0, DistinctBatches).Select(_ =>
        {
            var tokens = randint(0, s.Vocab, new long[] { s.Batch, s.Seq + 1 }, dtype: int64, device: device); // (B, T+1)
            return (Inputs: tokens.narrow(1, 0, s.Seq).contiguous(), Targets: tokens.narrow(1, 1, s.Seq).contiguous()); // (B, T) each
        }).ToArray();

        // Same weights, same batch: the two forwards must agree, or the comparison is of different models.
        float loomLoss0 = loom.EvalLoss(batches[0].Inputs, batches[0].Targets);
        float plainLoss0 = plain.EvalLoss(batches[0].Inputs, batches[0].Targets);
        // In bf16 Loom rounds its matmul inputs, so the bound is bf16's few-percent agreement instead of float32's.
        double tolerance = s.Precision == "bf16" ? 2e-2 : 1e-4;
        if (!(Math.Abs(loomLoss0 - plainLoss0) <= tolerance * Math.Max(1, Math.Abs(loomLoss0))))
            throw new InvalidOperationException($"same weights, different losses: Loom {loomLoss0}, plain {plainLoss0}; the forwards do not match");

        var contenders = new ITrainStepContender[] { loom, plain };
        var clocks = contenders.Select(_ => new PhaseClock(device, syncPhases)).ToArray();
        var timings = contenders.Select(_ => new List<StepTiming>()).ToArray();
        int rounds = s.Warmup + s.Steps;
        Console.Error.WriteLine($"train-step: {loom.ParameterCount:N0} parameters each, {s.Warmup} warm-up + {s.Steps} timed rounds on {Devices.Describe(device)}");
        for (int round = 0; round < rounds; round++)
        {
            var (inputs, targets) = batches[round % DistinctBatches];
            // A B on even rounds, B A on odd ones: neither contender always runs right after the other.
            int[] order = round % 2 == 0 ? [0, 1] : [1, 0];
            var stepTimes = new StepTiming[2];
            foreach (int c in order) stepTimes[c] = contenders[c].Step(inputs, targets, clocks[c]);
            bool warm = round >= s.Warmup;
            if (warm)
                for (int c = 0; c < 2; c++) timings[c].Add(stepTimes[c]);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {(warm ? "step" : "warm-up")} {(warm ? round - s.Warmup + 1 : round + 1)}: Loom {stepTimes[0].TotalMs:F1} ms (loss {stepTimes[0].Loss:F4}), plain {stepTimes[1].TotalMs:F1} ms (loss {stepTimes[1].Loss:F4})"));
        }
        double? loadAfter = MachineInfo.LoadAverage();

        return Report(s, device, syncPhases, loom.ParameterCount, (loomLoss0, plainLoss0), contenders, timings, (loadBefore, loadAfter));
    }

    private static string Report(TrainStepSettings s, Device device, bool phasesTimed, long parameters, (float Loom, float Plain) initialLoss,
        ITrainStepContender[] contenders, List<StepTiming>[] timings, (double? Before, double? After) load)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        void Line(FormattableString text) => sb.Append(text.ToString(inv)).Append('\n');

        double[] medians = timings.Select(t => Median(t.Select(x => x.TotalMs))).ToArray();
        double[] mins = timings.Select(t => t.Min(x => x.TotalMs)).ToArray();
        var paired = timings[0].Zip(timings[1], (a, b) => a.TotalMs / b.TotalMs).ToList();

        string machine = device.type == DeviceType.CUDA
            ? $"{Devices.CudaDeviceName(Math.Max(0, (int)device.index)) ?? "CUDA GPU"}; host CPU {MachineInfo.CpuModel()}"
            : MachineInfo.CpuModel();
        Line($"## train-step: Loom vs plain TorchSharp");
        Line($"");
        Line($"- date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Line($"- commit: {MachineInfo.GitCommit()}");
        Line($"- precision: Loom {s.Precision}, plain TorchSharp fp32");
        Line($"- machine: {machine}, {Environment.ProcessorCount} logical CPUs, {MachineInfo.OperatingSystem()}");
        Line($"- device: {device.type.ToString().ToLowerInvariant()}, libtorch intra-op threads {torch.get_num_threads()}; TorchSharp {MachineInfo.TorchSharpVersion()}, .NET {Environment.Version}");
        Line($"- load average (1 min) before / after: {Format(load.Before)} / {Format(load.After)}");
        Line($"- model: GPT, vocab {s.Vocab}, d_model {s.Dim}, {s.Layers} layers, {s.Heads} heads × {s.HeadDim}, MLP {s.MlpDim} (GELU), learned positions, LayerNorm + biases, tied embeddings; {parameters:N0} parameters in both");
        Line($"- step: batch {s.Batch} × seq {s.Seq} = {s.TokensPerStep:N0} tokens; AdamW (β {TrainStepSettings.Beta1}/{TrainStepSettings.Beta2}, wd {TrainStepSettings.WeightDecay} on matrices), clip {TrainStepSettings.ClipNorm}, float32");
        Line($"- timing: {s.Steps} steps per contender after {s.Warmup} warm-up, interleaved (A B, B A, ...)");
        Line($"");
        Line($"| contender | median ms/step | min ms/step | tokens/s (median) | Loom/plain |");
        Line($"|---|---:|---:|---:|---:|");
        for (int c = 0; c < contenders.Length; c++)
            Line($"| {contenders[c].Name} | {medians[c]:F1} | {mins[c]:F1} | {s.TokensPerStep / (medians[c] / 1000):N0} | {medians[c] / medians[1]:F3} |");
        Line($"");
        Line($"Loom/plain per interleaved pair: median {Median(paired):F3}, min {paired.Min():F3}, max {paired.Max():F3}.");
        Line($"Loss on the first batch from the same weights: Loom {initialLoss.Loom:F5}, plain {initialLoss.Plain:F5}; after the last step: Loom {timings[0][^1].Loss:F5}, plain {timings[1][^1].Loss:F5}.");

        if (phasesTimed)
        {
            Line($"");
            Line($"| phase (median ms) | Loom | plain | Loom − plain |");
            Line($"|---|---:|---:|---:|");
            foreach (var phase in Enum.GetValues<Phase>())
            {
                double a = Median(timings[0].Select(t => t.PhaseMs[(int)phase]));
                double b = Median(timings[1].Select(t => t.PhaseMs[(int)phase]));
                Line($"| {PhaseName(phase)} | {a:F2} | {b:F2} | {a - b:+0.00;-0.00;0.00} |");
            }
        }
        return sb.ToString();
    }

    private static string PhaseName(Phase phase) => phase switch
    {
        Phase.ZeroGrad => "zero grad",
        Phase.Forward => "forward + loss",
        Phase.Backward => "backward",
        Phase.Clip => "clip grad norm",
        _ => "optimizer step (+ loss read-back)",
    };

    private static string Format(double? value) => value is double v ? v.ToString("F2", CultureInfo.InvariantCulture) : "n/a";

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
