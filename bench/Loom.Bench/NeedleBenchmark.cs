using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Data;
using Loom.Models;
using Loom.Training.Evaluation;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>needle</c> benchmark.</summary>
internal sealed record NeedleSettings
{
    public string? Checkpoint { get; init; }
    public NeedleGridOptions Grid { get; init; } = new();
    public IReadOnlyList<string> Scalings { get; init; } = ["none", "linear", "ntk", "yarn"];
    public int? TrainingLength { get; init; }
    public int BlockwiseAbove { get; init; } = 1024;
    public int BlockSize { get; init; } = 512;
    public string Png { get; init; } = "bench/results/needle.png";
    public int Threads { get; init; } = 1;

    public const string Usage = """
        usage: loom-bench needle --checkpoint DIR [flags]

        Needle-in-a-haystack retrieval (Gemini 1.5) of a decoder_lm checkpoint with rotary positions (e.g. one trained by
        ./loom train -c needle): over a grid of context length × needle depth, the fraction of examples whose answer
        greedy decoding gets exactly right, for each RoPE scaling applied at evaluation time without fine-tuning, with
        the factor = length / training length (at least 1; at or below the training length every scaling is none).
        Prints a Markdown table per scaling and writes one PNG heat map with a panel per scaling.

          --checkpoint DIR      a checkpoint folder (checkpoints/step_*) or run folder's checkpoint (required)
          --lengths L,L,…       context lengths in tokens (default 256,512,1024,2048,4096,8192)
          --depths D,D,…        needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)
          --examples N          examples per cell (default 10)
          --scalings S,S,…      none, linear (position interpolation), ntk, yarn (default all four)
          --training-length N   the context the model was trained on (default: the checkpoint's max_sequence_length)
          --blockwise-above N   lengths above N use model.attention_impl = blockwise (default 1024)
          --block-size N        model.attention_block_size for those (default 512)
          --batch N             rows per forward (default 1)
          --seed N              seed of the examples (default 20261130)
          --png FILE            the heat map (default bench/results/needle.png)
          --threads N           libtorch CPU threads (default 1)
        """;

    public static NeedleSettings Parse(IReadOnlyList<string> args)
    {
        var s = BenchFlags.Parse(args, new NeedleSettings(), (s, flag) => flag.Name switch
        {
            "--checkpoint" => s with { Checkpoint = flag.Value() },
            "--lengths" => s with { Grid = s.Grid with { Lengths = flag.PositiveInts() } },
            "--depths" => s with { Grid = s.Grid with { Depths = Depths(flag.Value()) } },
            "--examples" => s with { Grid = s.Grid with { ExamplesPerCell = flag.PositiveInt() } },
            "--scalings" => s with { Scalings = ParseScalings(flag.Value()) },
            "--training-length" => s with { TrainingLength = flag.PositiveInt() },
            "--blockwise-above" => s with { BlockwiseAbove = flag.NonNegativeInt() },
            "--block-size" => s with { BlockSize = flag.PositiveInt() },
            "--batch" => s with { Grid = s.Grid with { BatchSize = flag.PositiveInt() } },
            "--seed" => s with { Grid = s.Grid with { Seed = (ulong)flag.NonNegativeLong() } },
            "--png" => s with { Png = flag.Value() },
            "--threads" => s with { Threads = flag.PositiveInt() },
            _ => throw flag.Unknown(),
        });
        if (string.IsNullOrWhiteSpace(s.Checkpoint)) throw new ArgumentException("--checkpoint DIR is required (a checkpoint of ./loom train -c needle)");
        s.Grid.Validate();
        return s;
    }

    private static IReadOnlyList<double> Depths(string text) => [.. text.Split(',', StringSplitOptions.TrimEntries).Select(d =>
        double.TryParse(d, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : throw new ArgumentException($"--depths needs numbers in [0, 1], got '{d}'"))];

    private static IReadOnlyList<string> ParseScalings(string text)
    {
        string[] names = text.Split(',', StringSplitOptions.TrimEntries);
        foreach (string n in names)
            if (n is not ("none" or "linear" or "ntk" or "yarn")) throw new ArgumentException($"--scalings: '{n}' is not one of none, linear, ntk, yarn");
        return names;
    }
}

/// <summary>
/// The <c>needle</c> benchmark: does a model trained on short contexts retrieve a fact from longer ones, and
/// does RoPE scaling (position interpolation, NTK-aware, YaRN) applied without fine-tuning help?
/// </summary>
internal static class NeedleBenchmark
{
    public static string Run(NeedleSettings s)
    {
        set_num_threads(s.Threads);
        string checkpoint = s.Checkpoint!;
        var manifest = ModelCheckpoint.ReadManifest(checkpoint);
        if (manifest.Model is not DecoderLmOptions trained || trained.Positions != PositionEncoding.Rotary)
            throw new ArgumentException($"{checkpoint} holds a {manifest.Model.Architecture} model without rotary positions; the needle benchmark scales RoPE, so it needs a decoder_lm with positions = rotary");
        var vocabulary = Vocabularies.Create(manifest.Vocabulary);
        int trainingLength = s.TrainingLength ?? trained.MaxSequenceLength;

        var results = new List<(NeedleGridResult Result, double Seconds)>();
        var progress = new StderrProgress();
        foreach (string scaling in s.Scalings)
        {
            var watch = Stopwatch.StartNew();
            var result = NeedleGrid.Evaluate(Title(scaling), length => Build(checkpoint, trained, scaling, length, trainingLength, s), vocabulary, s.Grid, progress);
            results.Add((result, watch.Elapsed.TotalSeconds));
        }
        HeatMapPlot.Save(s.Png, [.. results.Select(r => r.Result.ToPanel())],
            string.Create(CultureInfo.InvariantCulture, $"Needle retrieval accuracy (%, exact greedy match, {s.Grid.ExamplesPerCell} per cell); trained at {trainingLength} tokens"),
            "needle depth", "context length (tokens)");
        return Report(s, manifest, trainingLength, results);
    }

    /// <summary>The checkpoint's model for one length: its weights, a context that holds the length, and the scaling.</summary>
    private static LanguageModel Build(string checkpoint, DecoderLmOptions trained, string scaling, int length, int trainingLength, NeedleSettings s)
    {
        double factor = Math.Max(1, length / (double)trainingLength);
        RopeScaling? rope = factor == 1 ? null : scaling switch
        {
            "linear" => new RopeScaling { Type = RopeScalingType.Linear, Factor = factor },
            "ntk" => new RopeScaling { Type = RopeScalingType.Ntk, Factor = factor },
            "yarn" => new RopeScaling { Type = RopeScalingType.Yarn, Factor = factor, OriginalMaxPositionEmbeddings = trainingLength },
            _ => null,
        };
        var options = trained with
        {
            RopeScaling = rope,
            MaxSequenceLength = Math.Max(trained.MaxSequenceLength, length),
            AttentionImpl = length > s.BlockwiseAbove ? AttentionImpl.Blockwise : trained.AttentionImpl,
            AttentionBlockSize = s.BlockSize,
        };
        var model = options.Build();
        ModelCheckpoint.LoadCheckpointWeights(model, checkpoint);
        return model;
    }

    private static string Title(string scaling) => scaling switch
    {
        "none" => "no scaling",
        "linear" => "position interpolation",
        "ntk" => "NTK-aware",
        _ => "YaRN",
    };

    private static string Report(NeedleSettings s, ModelManifest manifest, int trainingLength, List<(NeedleGridResult Result, double Seconds)> results)
    {
        var c = CultureInfo.InvariantCulture;
        var m = (DecoderLmOptions)manifest.Model;
        var text = new StringBuilder();
        text.AppendLine(c, $"CPU {MachineInfo.CpuModel()}, {MachineInfo.OperatingSystem()}, TorchSharp {MachineInfo.TorchSharpVersion()}, commit {MachineInfo.GitCommit()}, {s.Threads} thread(s)");
        text.AppendLine(c, $"checkpoint {s.Checkpoint} (step {manifest.Step}): decoder_lm, {m.NumLayers} layers, d {m.ModelDim}, {m.NumHeads} heads of {m.HeadDim}, rope base {m.RopeBase}, trained at {trainingLength} tokens");
        text.AppendLine(c, $"{s.Grid.ExamplesPerCell} examples per cell (seed {s.Grid.Seed}); factor = length / {trainingLength}; blockwise attention above {s.BlockwiseAbove} tokens (block {s.BlockSize})");
        text.AppendLine();
        foreach (var (result, seconds) in results)
        {
            text.AppendLine(c, $"{result.Setting} ({seconds:F0} s):");
            text.AppendLine();
            text.Append(result.ToMarkdown());
            text.AppendLine();
        }
        text.AppendLine(c, $"heat map: {s.Png}");
        return text.ToString();
    }

    /// <summary>Writes each line to stderr on the calling thread (Progress posts to the thread pool, which could reorder lines).</summary>
    private sealed class StderrProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine(value);
    }
}
