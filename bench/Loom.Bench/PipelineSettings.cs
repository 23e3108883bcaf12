using System.Globalization;

namespace Loom.Bench;

/// <summary>Flags of the <c>pipeline</c> benchmark.</summary>
internal sealed record PipelineSettings
{
    public string Vocabulary { get; init; } = "byte";
    public int Batch { get; init; } = 16;
    public int Seq { get; init; } = 256;

    /// <summary>Batches made per pipeline row at least (the row also runs for <see cref="Seconds"/> and covers one epoch).</summary>
    public int Steps { get; init; } = 20;

    /// <summary>Seconds of batch production per pipeline row at least.</summary>
    public double Seconds { get; init; } = 2;

    /// <summary>Timed training steps of the tiny model, after one warm-up step.</summary>
    public int TrainSteps { get; init; } = 5;

    public int? Threads { get; init; }

    /// <summary>Where the task caches are built; null for a temporary folder deleted afterwards.</summary>
    public string? CacheDir { get; init; }

    public long Seed { get; init; } = 1234;

    /// <summary>Where the training row runs: cpu (default), cuda, cuda:N or auto. The pipeline always runs on the CPU.</summary>
    public string Device { get; init; } = "cpu";

    public long TokensPerBatch => (long)Batch * Seq;

    public const string Usage = """
        usage: loom-bench pipeline [flags]

        Batch production of the trainer's data path for austen (LmBatcher over the tokenized train split)
        and spam_assassin (PackedTrainingBatches), on the fly and from the offline task cache, beside the
        training speed of the tiny preset on the same batches' shape; PASS when every pipeline row is at
        least 10x faster than training.

          --vocabulary V   byte (default), tiktoken:NAME or a SentencePiece .model file
          --batch N        rows per batch (default 16)
          --seq N          tokens per row (default 256)
          --steps N        batches per pipeline row at least (default 20); each row also makes
                           one epoch's worth of batches and runs for --seconds at least
          --seconds S      seconds of batch production per row at least (default 2)
          --train-steps N  timed training steps of the tiny preset after 1 warm-up (default 5)
          --threads N      libtorch intra-op threads (default: libtorch's choice)
          --cache-dir D    build the task caches in D (rebuilt if there, kept afterwards);
                           default: a temporary folder, deleted afterwards
          --seed N         batch order and model weights (default 1234)
          --device D       where the training row runs: cpu (default), cuda, cuda:N or auto
        """;

    /// <summary>Parses flags; throws <see cref="ArgumentException"/> with a message that names the bad flag.</summary>
    public static PipelineSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new PipelineSettings(), (s, flag) => flag.Name switch
    {
        "--vocabulary" => s with { Vocabulary = flag.Value() },
        "--batch" => s with { Batch = flag.PositiveInt() },
        "--seq" => s with { Seq = flag.PositiveInt() },
        "--steps" => s with { Steps = flag.PositiveInt() },
        "--seconds" => s with { Seconds = flag.Number(0, inclusive: true) },
        "--train-steps" => s with { TrainSteps = flag.PositiveInt() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--cache-dir" => s with { CacheDir = flag.Value() },
        "--seed" => s with { Seed = flag.PositiveInt() },
        "--device" => s with { Device = flag.Value() },
        _ => throw flag.Unknown(),
    });
}
