using System.ComponentModel;
using Loom.Data;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom vocab train</c>: a lossless SentencePiece model with PaLM's settings.</summary>
public sealed class VocabTrainCommand : Command<VocabTrainCommand.Settings>
{
    /// <summary>Options of <c>loom vocab train</c>.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Training text.</summary>
        [CommandOption("--input <FILE>")]
        [Description("UTF-8 text to learn the pieces from.")]
        public string Input { get; init; } = "";

        /// <summary>Model file to write.</summary>
        [CommandOption("-o|--output <FILE.model>")]
        [Description("Where to write the SentencePiece model (written atomically).")]
        public string Output { get; init; } = "";

        /// <summary>Number of pieces.</summary>
        [CommandOption("--vocab-size <N>")]
        [Description("Number of pieces (default 8000).")]
        public int VocabSize { get; init; } = 8000;

        /// <summary>bpe or unigram.</summary>
        [CommandOption("--model-type <TYPE>")]
        [Description("bpe (default) or unigram.")]
        public string ModelType { get; init; } = "bpe";

        /// <inheritdoc />
        public override Spectre.Console.ValidationResult Validate() =>
            string.IsNullOrWhiteSpace(Input) ? Spectre.Console.ValidationResult.Error("--input FILE is required")
            : string.IsNullOrWhiteSpace(Output) ? Spectre.Console.ValidationResult.Error("--output FILE.model is required")
            : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (!File.Exists(settings.Input)) throw new FileNotFoundException($"--input {settings.Input} not found: pass a UTF-8 text file");
        var type = settings.ModelType.ToLowerInvariant() switch
        {
            "bpe" => SentencePieceModelType.Bpe,
            "unigram" => SentencePieceModelType.Unigram,
            _ => throw new ArgumentException($"--model-type {settings.ModelType}: use bpe or unigram"),
        };
        var options = new SentencePieceTrainerOptions { VocabSize = settings.VocabSize, ModelType = type };
        string model;
        try
        {
            model = SentencePieceTrainer.Train(settings.Input, settings.Output, options, new Progress<string>(Console.WriteLine));
        }
        catch (InvalidOperationException e) // spm_train missing or failed: its message says why and what to install
        {
            Console.Error.WriteLine($"loom: error: {LoomApp.OneLine(e)}");
            return 1;
        }

        // Prove the promise: the model reproduces the training text exactly (byte fallback, whitespace kept).
        var vocabulary = new SentencePieceVocabulary(model);
        string sample = string.Join('\n', File.ReadLines(settings.Input).Take(2000));
        int[] ids = vocabulary.Encode(sample);
        bool exact = vocabulary.Decode(ids) == sample;
        Console.WriteLine(FormattableString.Invariant(
            $"wrote {model}: {vocabulary.Size} ids; the first {Math.Min(2000, sample.Split('\n').Length)} lines are {ids.Length} tokens ({sample.Length / (double)Math.Max(1, ids.Length):F2} characters/token) and decode back {(exact ? "exactly" : "NOT exactly")}"));
        Console.WriteLine($"train with it: ./loom train --set data.vocabulary={model} --set model.vocab_size={vocabulary.Size} ...");
        return exact ? 0 : 1;
    }
}
