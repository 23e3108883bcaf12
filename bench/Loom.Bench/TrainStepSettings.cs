using System.Globalization;

namespace Loom.Bench;

/// <summary>Flags of the <c>train-step</c> benchmark; the same names and defaults as bench/peers/train_step.py.</summary>
internal sealed record TrainStepSettings
{
    public int Steps { get; init; } = 10;
    public int Warmup { get; init; } = 3;
    public int Dim { get; init; } = 192;
    public int Layers { get; init; } = 4;
    public int HeadDim { get; init; } = 64;
    public int Batch { get; init; } = 16;
    public int Seq { get; init; } = 256;
    public int Vocab { get; init; } = 258;
    public int? Threads { get; init; }
    public string Device { get; init; } = "cpu";
    public bool Phases { get; init; }
    public bool FusedQkv { get; init; } = true;
    public long Seed { get; init; } = 1234;
    public string Precision { get; init; } = "fp32";

    // Optimizer settings shared by both contenders (and the Python twin); their values do not change the
    // work per step, only that both do the same update.
    public const double LearningRate = 3e-4;
    public const double Beta1 = 0.9;
    public const double Beta2 = 0.95;
    public const double Epsilon = 1e-8;
    public const double WeightDecay = 0.1;
    public const double ClipNorm = 1.0;
    public const double NormEpsilon = 1e-6;

    /// <summary>Query heads: d_model / head_dim, so that heads · head_dim = d_model as in GPT.</summary>
    public int Heads => Dim / HeadDim;

    public int MlpDim => 4 * Dim;

    public long TokensPerStep => (long)Batch * Seq;

    public const string Usage = """
        usage: loom-bench train-step [flags]

          --steps N      timed steps per contender (default 10), after --warmup N (default 3)
          --dim N        d_model (default 192); heads = dim / head-dim
          --head-dim N   width of each attention head (default 64)
          --layers N     decoder blocks (default 4)
          --batch N      sequences per step (default 16)
          --seq N        tokens per sequence (default 256)
          --vocab N      vocabulary size (default 258, Loom's byte vocabulary)
          --threads N    libtorch intra-op threads (default: libtorch's choice)
          --device D     cpu (default), cuda, cuda:N or auto
          --phases       time zero-grad / forward / backward / clip / optimizer separately on CUDA too
                         (always on for CPU, where it costs nothing; on CUDA it adds a sync per phase)
          --qkv K        plain model's q/k/v projection: fused (default, nanoGPT) or separate (Loom's layout)
          --seed N       weights and token batches (default 1234)
          --precision P  Loom's compute precision: fp32 (default) or bf16 (training.precision: bfloat16 matmuls
                         and attention over float32 weights); the plain TorchSharp model stays float32
        """;

    /// <summary>Parses flags; throws <see cref="ArgumentException"/> with a message that names the bad flag.</summary>
    public static TrainStepSettings Parse(IReadOnlyList<string> args)
    {
        var settings = BenchFlags.Parse(args, new TrainStepSettings(), (s, flag) => flag.Name switch
        {
            "--steps" => s with { Steps = flag.PositiveInt() },
            "--warmup" => s with { Warmup = flag.NonNegativeInt() },
            "--dim" => s with { Dim = flag.PositiveInt() },
            "--head-dim" => s with { HeadDim = flag.PositiveInt() },
            "--layers" => s with { Layers = flag.PositiveInt() },
            "--batch" => s with { Batch = flag.PositiveInt() },
            "--seq" => s with { Seq = flag.PositiveInt() },
            "--vocab" => s with { Vocab = flag.PositiveInt() },
            "--threads" => s with { Threads = flag.PositiveInt() },
            "--device" => s with { Device = flag.Value() },
            "--phases" => s with { Phases = true },
            "--qkv" => s with { FusedQkv = flag.Value() switch { "fused" => true, "separate" => false, var k => throw new ArgumentException($"--qkv takes fused or separate, got '{k}'") } },
            "--seed" => s with { Seed = flag.PositiveInt() },
            "--precision" => s with { Precision = CheckedPrecision(flag.Value()) },
            _ => throw flag.Unknown(),
        });
        if (settings.Dim % settings.HeadDim != 0)
            throw new ArgumentException($"--dim {settings.Dim} must be a multiple of --head-dim {settings.HeadDim} (heads · head_dim = d_model)");
        return settings;
    }

    /// <summary>The name, once <see cref="Loom.Models.ComputePrecisions.Parse"/> has accepted it (it throws otherwise).</summary>
    private static string CheckedPrecision(string name)
    {
        Loom.Models.ComputePrecisions.Parse(name, "--precision");
        return name;
    }
}
