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
    public static PipelineSettings Parse(IReadOnlyList<string> args)
    {
        var s = new PipelineSettings();
        for (int i = 0; i < args.Count; i++)
        {
            string flag = args[i];
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{flag} needs a value");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0
                ? v
                : throw new ArgumentException($"{flag} needs a positive integer, got '{args[i]}'");
            s = flag switch
            {
                "--vocabulary" => s with { Vocabulary = Value() },
                "--batch" => s with { Batch = Int() },
                "--seq" => s with { Seq = Int() },
                "--steps" => s with { Steps = Int() },
                "--seconds" => s with
                {
                    Seconds = double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d >= 0
                        ? d
                        : throw new ArgumentException($"--seconds needs a number >= 0, got '{args[i]}'"),
                },
                "--train-steps" => s with { TrainSteps = Int() },
                "--threads" => s with { Threads = Int() },
                "--cache-dir" => s with { CacheDir = Value() },
                "--seed" => s with { Seed = Int() },
                "--device" => s with { Device = Value() },
                _ => throw new ArgumentException($"unknown flag '{flag}'"),
            };
        }
        return s;
    }
}
