using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Data;
using Loom.Models.Reformer;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>reformer-duplication</c> benchmark.</summary>
internal sealed record ReformerDuplicationSettings
{
    public int Length { get; init; } = 64;
    public int Steps { get; init; } = 1000;
    public int Batch { get; init; } = 16;
    public int Symbols { get; init; } = 127;
    public int ModelDim { get; init; } = 128;
    public int Heads { get; init; } = 4;
    public int Buckets { get; init; } = 2;
    public int ChunkLength { get; init; } = 16;
    public IReadOnlyList<int> Rounds { get; init; } = [4];
    public double LearningRate { get; init; } = 2e-3;
    public int EvalSequences { get; init; } = 256;
    public int Threads { get; init; } = 1;

    public const string Usage = """
        usage: loom-bench reformer-duplication [flags]

        The Reformer paper's duplication task (§5): sequences 0 w 0 w of random symbols w, loss only on the second
        copy of w. A one-layer Reformer with full shared-QK attention and the same model with LSH attention (one run
        per number of rounds) train for the same steps on the same batches (Adam); the report gives each one's loss
        and accuracy on the second copy of held-out sequences, with the attention it was trained with.

          --length N        tokens per sequence, 0 w 0 w (default 64: w of 31 symbols)
          --steps N         training steps of each model (default 1000)
          --batch N         sequences per step (default 16)
          --symbols N       alphabet of w, ids 1..N (default 127, the paper's)
          --model-dim N     width of each reversible half (default 128)
          --heads N         attention heads of width model-dim / heads (default 4)
          --buckets N       LSH buckets (default 2)
          --chunk N         LSH chunk length (default 16)
          --rounds LIST     LSH hash rounds, one model each (default 4)
          --lr X            Adam learning rate (default 2e-3; the defaults are bench/RESULTS.md's passing run)
          --eval N          held-out sequences (default 256)
          --threads N       libtorch CPU threads (default 1)
        """;

    public static ReformerDuplicationSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new ReformerDuplicationSettings(), (s, flag) => flag.Name switch
    {
        "--length" => s with { Length = flag.PositiveInt() },
        "--steps" => s with { Steps = flag.PositiveInt() },
        "--batch" => s with { Batch = flag.PositiveInt() },
        "--symbols" => s with { Symbols = flag.PositiveInt() },
        "--model-dim" => s with { ModelDim = flag.PositiveInt() },
        "--heads" => s with { Heads = flag.PositiveInt() },
        "--buckets" => s with { Buckets = flag.PositiveInt() },
        "--chunk" => s with { ChunkLength = flag.PositiveInt() },
        "--rounds" => s with { Rounds = flag.PositiveInts() },
        "--lr" => s with { LearningRate = double.Parse(flag.Value(), CultureInfo.InvariantCulture) },
        "--eval" => s with { EvalSequences = flag.PositiveInt() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>
/// The <c>reformer-duplication</c> benchmark: does a one-layer LSH Reformer reach full attention's accuracy on
/// the duplication task at equal steps (Reformer §5, Table 2)?
/// </summary>
internal static class ReformerDuplicationBenchmark
{
    public static string Run(ReformerDuplicationSettings s)
    {
        if (s.Length % 2 != 0 || s.Length < 4) throw new ArgumentException($"--length {s.Length} must be even and at least 4 (0 w 0 w)");
        if (s.ModelDim % s.Heads != 0) throw new ArgumentException($"--heads {s.Heads} must divide --model-dim {s.ModelDim}");
        set_num_threads(s.Threads);
        var models = new List<(string Name, ReformerOptions Options)> { ("full", Options(s, ReformerAttentionKind.Full, 1)) };
        models.AddRange(s.Rounds.Select(r => ($"LSH-{r}", Options(s, ReformerAttentionKind.Lsh, r))));

        using var heldOut = Sequences(s, s.EvalSequences, seed: -1);
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"## reformer-duplication: one-layer full vs LSH attention on 0w0w, {DateTime.UtcNow:yyyy-MM-dd}");
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"{MachineInfo.CpuModel()}, {MachineInfo.OperatingSystem()}, TorchSharp {MachineInfo.TorchSharpVersion()}, commit {MachineInfo.GitCommit()}, {s.Threads} thread(s), load average {MachineInfo.LoadAverage()?.ToString("F1", CultureInfo.InvariantCulture) ?? "?"}.");
        report.AppendLine(CultureInfo.InvariantCulture, $"Sequences of {s.Length} tokens (w of {s.Length / 2 - 1} symbols from {s.Symbols}), {s.Steps} steps of {s.Batch} sequences (the same batches for every model), Adam lr {s.LearningRate}; one reversible layer of width {s.ModelDim}, {s.Heads} heads; LSH with {s.Buckets} buckets and chunks of {s.ChunkLength}. Loss and accuracy (teacher-forced next-symbol argmax) on the second copy of w in {s.EvalSequences} held-out sequences, each trained model evaluated with every attention (LSH is parameter-free: the same weights; its eval rotations are fixed).");
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"| trained with | steps | length | parameters | train loss (last 10 steps) | {string.Join(" | ", models.Select(m => $"held-out loss / accuracy, eval {m.Name}"))} | train time (s) |");
        report.AppendLine(CultureInfo.InvariantCulture, $"|---|---|---|---|---|{string.Concat(models.Select(_ => "---|"))}---|");
        foreach (var (name, options) in models)
        {
            var r = Train(s, name, options, models.Select(m => m.Options).ToList(), heldOut);
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {name} | {s.Steps} | {s.Length} | {r.Parameters:N0} | {r.TrainLoss:F3} | {string.Join(" | ", r.Evals.Select(e => $"{e.Loss:F3} / {e.Accuracy:P1}"))} | {r.Seconds:F0} |");
        }
        return report.ToString();
    }

    private static ReformerOptions Options(ReformerDuplicationSettings s, ReformerAttentionKind attention, int rounds) => new ReformerOptions
    {
        VocabSize = s.Symbols + 1, MaxSequenceLength = s.Length, ModelDim = s.ModelDim, NumLayers = 1, NumHeads = s.Heads,
        HeadDim = s.ModelDim / s.Heads, MlpDim = 2 * s.ModelDim, Attention = attention, LshBuckets = s.Buckets, LshRounds = rounds,
        LshChunkLength = s.ChunkLength, FfChunkLength = s.Length, OutputChunkLength = s.Length,
    }.Validate();

    private sealed record Result(long Parameters, double TrainLoss, IReadOnlyList<(double Loss, double Accuracy)> Evals, double Seconds);

    private static Result Train(ReformerDuplicationSettings s, string name, ReformerOptions options, IReadOnlyList<ReformerOptions> evalOptions, FeatureBatch heldOut)
    {
        using var init = new Generator(1);
        using var model = (ReformerModel)options.Build(generator: init); // the same initial weights for every attention
        using var optimizer = optim.Adam(model.parameters(), s.LearningRate);
        var recent = new Queue<Tensor>();
        var watch = Stopwatch.StartNew();
        model.train();
        for (int step = 0; step < s.Steps; step++)
        {
            using var scope = NewDisposeScope();
            using var batch = Sequences(s, s.Batch, seed: step);
            optimizer.zero_grad();
            var loss = model.Loss(batch, zLossWeight: 0).CrossEntropy;
            loss.backward();
            optimizer.step();
            recent.Enqueue(loss.detach().MoveToOuterDisposeScope());
            if (recent.Count > 10) recent.Dequeue().Dispose();
            if ((step + 1) % 50 == 0)
                Console.Error.WriteLine($"{name}: step {step + 1}/{s.Steps}, loss {loss.item<float>():F3}, {watch.Elapsed.TotalSeconds:F0} s");
        }
        watch.Stop();
        double trainLoss = recent.Average(t => t.item<float>());
        foreach (var t in recent) t.Dispose();

        var weights = model.state_dict();
        var evals = evalOptions.Select(o =>
        {
            using var evalModel = (ReformerModel)o.Build();
            evalModel.load_state_dict(weights);
            var (loss, accuracy) = Evaluate(evalModel, heldOut);
            Console.Error.WriteLine($"{name}: evaluated with {o.Attention} ({o.LshRounds} rounds): held-out loss {loss:F3}, accuracy {accuracy:P1}");
            return (loss, accuracy);
        }).ToList();
        return new Result(model.ParameterCount, trainLoss, evals, watch.Elapsed.TotalSeconds);
    }

    private static (double Loss, double Accuracy) Evaluate(ReformerModel model, FeatureBatch heldOut)
    {
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var logits = model.Forward(heldOut).Logits;                                       // (N, T, V)
        var weights = heldOut.LossWeights!;                                               // (N, T)
        var loss = Loom.Models.LanguageModel.LossOfLogits(logits, heldOut.Targets, weights, 0).CrossEntropy.item<float>();
        var correct = (logits.argmax(-1).eq(heldOut.Targets).to(ScalarType.Float32) * weights).sum() / weights.sum();
        return (loss, correct.item<float>());
    }

    /// <summary>
    /// <paramref name="count"/> rows 0 w 0 w of length T, w random symbols 1..S drawn from <paramref name="seed"/>
    /// (negative seeds: held-out rows); targets are the row shifted by one, weighted only where they are the second w.
    /// </summary>
    private static FeatureBatch Sequences(ReformerDuplicationSettings s, int count, long seed)
    {
        int t = s.Length, half = t / 2;
        using var g = new Generator(unchecked((ulong)(seed >= 0 ? 1000 + seed : (1L << 40) - seed)));
        var w = randint(1, s.Symbols + 1, new long[] { count, half - 1 }, generator: g);         // (N, T/2 - 1)
        var zero = zeros(new long[] { count, 1 }, ScalarType.Int64);
        var row = cat([zero, w, zero, w], 1);                                                  // (N, T)
        var targets = cat([row.narrow(1, 1, t - 1), zero], 1);                                  // (N, T)
        var weights = zeros(new long[] { count, t });                                           // (N, T)
        weights.narrow(1, half, half - 1).fill_(1);                                             // inputs T/2 .. T-2 predict the second w
        return FeatureBatch.Decoder(row, targets, lossWeights: weights);
    }
}
