using System.Globalization;

namespace Loom.Data;

/// <summary>The SentencePiece segmentation algorithm to train.</summary>
public enum SentencePieceModelType
{
    /// <summary>Byte-pair encoding (<c>--model_type=bpe</c>).</summary>
    Bpe,

    /// <summary>
    /// The unigram language model (<c>--model_type=unigram</c>), as in T5. spm_encode round-trips such a
    /// model losslessly, but Microsoft.ML.Tokenizers 2.0.1 mis-numbers unigram byte-fallback pieces
    /// (ids past the vocabulary, or a crash when there is no BOS), so <see cref="SentencePieceVocabulary"/>
    /// cannot use it yet.
    /// </summary>
    Unigram,
}

/// <summary>What <see cref="SentencePieceTrainer"/> trains.</summary>
public sealed record SentencePieceTrainerOptions
{
    /// <summary>The smallest vocabulary: the 256 byte-fallback pieces, PAD, EOS, UNK, BOS and at least one more.</summary>
    public const int MinVocabSize = 261;

    /// <summary>The largest vocabulary accepted.</summary>
    public const int MaxVocabSize = 1 << 20;

    private readonly int vocabSize = 32_000;
    private readonly double characterCoverage = 0.9995;
    private readonly long inputSentenceSize;
    private readonly int threads = Math.Max(1, Environment.ProcessorCount);
    private readonly string program = "spm_train";

    /// <summary>The number of pieces, in <c>[MinVocabSize, MaxVocabSize]</c>; spm_train fails when the text cannot fill it.</summary>
    /// <exception cref="ArgumentException">The value is out of range.</exception>
    public int VocabSize
    {
        get => vocabSize;
        init => vocabSize = value is >= MinVocabSize and <= MaxVocabSize
            ? value : throw new ArgumentException($"VocabSize = {value} must be in [{MinVocabSize}, {MaxVocabSize}]", nameof(VocabSize));
    }

    /// <summary>BPE (the default, which <see cref="SentencePieceVocabulary"/> loads) or unigram.</summary>
    /// <exception cref="ArgumentException">The value is not a defined <see cref="SentencePieceModelType"/>.</exception>
    public SentencePieceModelType ModelType
    {
        get;
        init => field = Enum.IsDefined(value)
            ? value : throw new ArgumentException($"ModelType = {value} must be Bpe or Unigram", nameof(ModelType));
    } = SentencePieceModelType.Bpe;

    /// <summary>
    /// The fraction of characters, by frequency, that get their own piece, in <c>(0, 1]</c>; the rarest
    /// others are spelled in byte-fallback pieces, so nothing is lost either way.
    /// </summary>
    /// <exception cref="ArgumentException">The value is outside <c>(0, 1]</c>.</exception>
    public double CharacterCoverage
    {
        get => characterCoverage;
        init => characterCoverage = value > 0 && value <= 1
            ? value : throw new ArgumentException($"CharacterCoverage = {value} must be in (0, 1]", nameof(CharacterCoverage));
    }

    /// <summary>How many lines spm_train samples from the text; 0 = all of them.</summary>
    /// <exception cref="ArgumentException">The value is negative.</exception>
    public long InputSentenceSize
    {
        get => inputSentenceSize;
        init => inputSentenceSize = value >= 0
            ? value : throw new ArgumentException($"InputSentenceSize = {value} must be 0 (all lines) or positive", nameof(InputSentenceSize));
    }

    /// <summary>spm_train's thread count, at least 1.</summary>
    /// <exception cref="ArgumentException">The value is below 1.</exception>
    public int Threads
    {
        get => threads;
        init => threads = value >= 1 ? value : throw new ArgumentException($"Threads = {value} must be at least 1", nameof(Threads));
    }

    /// <summary>The spm_train program: a name looked up on PATH, or a path.</summary>
    /// <exception cref="ArgumentException">The value is empty.</exception>
    public string Program
    {
        get => program;
        init => program = !string.IsNullOrWhiteSpace(value)
            ? value : throw new ArgumentException("Program must name the spm_train program", nameof(Program));
    }
}

/// <summary>
/// Trains a SentencePiece model with Debian's <c>spm_train</c> (package <c>sentencepiece</c>), using
/// PaLM's lossless settings: byte fallback, digits split, whitespace kept as written, no normalization.
/// The engine of <c>loom vocab train</c>.
/// </summary>
/// <remarks>
/// Ids follow T5: PAD = 0, EOS = 1, UNK = 2, then BOS = 3 (T5 has none, but Microsoft.ML.Tokenizers
/// 2.0.1 cannot load a unigram model without one; Loom never adds it), then the 256 byte pieces and the
/// learned ones. See <see cref="SentencePieceModelType.Unigram"/> for the unigram limitation.
/// With these settings any text round-trips exactly through <see cref="SentencePieceVocabulary"/>:
/// characters without a piece are spelled as UTF-8 bytes, and nothing is normalized away.
/// </remarks>
public static class SentencePieceTrainer
{
    /// <summary>Trains a model and writes it to <paramref name="outputModelPath"/>.</summary>
    /// <param name="inputTextPath">A UTF-8 text file; each line is a training sentence.</param>
    /// <param name="outputModelPath">The <c>.model</c> file to write. It is replaced atomically: written
    /// beside the target and renamed, so a reader never sees half a model and a failed run leaves the old one.</param>
    /// <param name="options">The vocabulary size, model type and sampling.</param>
    /// <param name="progress">Receives the command line, or null.</param>
    /// <returns>The full path of the written model.</returns>
    /// <exception cref="FileNotFoundException">The input file does not exist.</exception>
    /// <exception cref="InvalidOperationException">spm_train is not installed or failed; the message says
    /// which (with <c>apt-get install sentencepiece</c>, or spm_train's last error line).</exception>
    public static string Train(string inputTextPath, string outputModelPath, SentencePieceTrainerOptions options, IProgress<string>? progress = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(inputTextPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputModelPath);
        ArgumentNullException.ThrowIfNull(options);
        string input = Path.GetFullPath(inputTextPath);
        if (!File.Exists(input))
            throw new FileNotFoundException($"training text '{input}' does not exist", input);
        string output = Path.GetFullPath(outputModelPath);
        string program = FindProgram(options.Program)
            ?? throw new InvalidOperationException(
                $"{options.Program} was not found on PATH; install it with: apt-get install sentencepiece");

        string outputDirectory = Path.GetDirectoryName(output)!;
        Directory.CreateDirectory(outputDirectory);
        // The scratch folder sits beside the target so the final rename stays on one file system.
        string scratch = Path.Combine(outputDirectory, $".{Path.GetFileName(output)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(scratch);
        try
        {
            string prefix = Path.Combine(scratch, "spm");
            string[] arguments = [.. Arguments(input, prefix, options)];
            progress?.Report($"{program} {string.Join(' ', arguments)}");
            var result = ProcessRunner.Run(program, arguments, scratch);
            string model = prefix + ".model";
            if (result.ExitCode != 0 || !File.Exists(model))
                throw new InvalidOperationException(
                    $"spm_train failed (exit code {result.ExitCode}): {LastError(result.StandardError)}");
            File.Move(model, output, overwrite: true);
            return output;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>spm_train's arguments for these options: PaLM's lossless settings plus T5's special ids.</summary>
    /// <param name="input">The training text.</param>
    /// <param name="modelPrefix">Where spm_train writes <c>PREFIX.model</c> and <c>PREFIX.vocab</c>.</param>
    /// <param name="options">The options.</param>
    /// <returns>The arguments, one <c>--flag=value</c> each.</returns>
    public static IReadOnlyList<string> Arguments(string input, string modelPrefix, SentencePieceTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var c = CultureInfo.InvariantCulture;
        return
        [
            $"--input={input}",
            $"--model_prefix={modelPrefix}",
            $"--vocab_size={options.VocabSize.ToString(c)}",
            $"--model_type={(options.ModelType == SentencePieceModelType.Bpe ? "bpe" : "unigram")}",
            $"--character_coverage={options.CharacterCoverage.ToString("R", c)}",
            $"--input_sentence_size={options.InputSentenceSize.ToString(c)}",
            $"--num_threads={options.Threads.ToString(c)}",
            "--byte_fallback=true",
            "--split_digits=true",
            "--remove_extra_whitespaces=false",
            "--allow_whitespace_only_pieces=true",
            "--normalization_rule_name=identity",
            "--pad_id=0",
            "--eos_id=1",
            "--unk_id=2",
            "--bos_id=3", // Microsoft.ML.Tokenizers' unigram loader indexes the BOS piece, so -1 would not load
        ];
    }

    /// <summary>spm_train's cause of failure: its last line before the generic "Program terminated" line.</summary>
    private static string LastError(string stderr) =>
        stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .LastOrDefault(l => !l.StartsWith("Program terminated", StringComparison.Ordinal)) ?? "no error output";

    /// <summary>The full path of <paramref name="program"/>: itself if it contains a slash, else the first match on PATH.</summary>
    private static string? FindProgram(string program)
    {
        if (program.Contains('/')) return File.Exists(program) ? Path.GetFullPath(program) : null;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
