using System.ComponentModel;
using Loom.Core;
using Loom.Data;
using Loom.Inference;
using Loom.Models;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom generate</c>.</summary>
public sealed class GenerateCommand : Command<GenerateCommand.Settings>
{
    /// <summary>Options of <c>loom generate</c>.</summary>
    public sealed class Settings : CheckpointSettings
    {

        /// <summary>Prompt text.</summary>
        [CommandOption("--prompt <TEXT>")]
        [Description("Text to continue (default: a newline).")]
        public string Prompt { get; init; } = "\n";

        /// <summary>Most tokens to generate.</summary>
        [CommandOption("-n|--max-tokens <N>")]
        [Description("Most tokens to generate (default 300).")]
        public int MaxTokens { get; init; } = 300;

        /// <summary>Temperature.</summary>
        [CommandOption("-t|--temperature <T>")]
        [Description("Sampling temperature; 0 = greedy (default 0.8).")]
        public double Temperature { get; init; } = 0.8;

        /// <summary>Top-k.</summary>
        [CommandOption("--top-k <K>")]
        [Description("Sample from the k most likely tokens only; 0 = off (default).")]
        public int TopK { get; init; }

        /// <summary>Top-p.</summary>
        [CommandOption("--top-p <P>")]
        [Description("Nucleus sampling threshold, above 0 and at most 1; 1 = off (default 0.95).")]
        public double TopP { get; init; } = 0.95;

        /// <summary>Seed.</summary>
        [CommandOption("--seed <SEED>")]
        [Description("Seed for reproducible sampling.")]
        public long? Seed { get; init; }

        /// <summary>Ignore EOS.</summary>
        [CommandOption("--ignore-eos")]
        [Description("Keep generating past the end-of-document token.")]
        public bool IgnoreEos { get; init; }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var sampling = new SamplingOptions
        {
            MaxTokens = settings.MaxTokens, Temperature = settings.Temperature, TopK = settings.TopK,
            TopP = settings.TopP, Seed = settings.Seed, StopAtEos = !settings.IgnoreEos,
        };
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var device = Devices.Resolve(settings.Device ?? "auto");
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        using (model)
        {
            var vocabulary = CheckpointVocabulary.Load(checkpoint, manifest);
            Generate(model, vocabulary, settings.Prompt, sampling, Console.Out, cancellationToken);
        }
        return 0;
    }

    /// <summary>Streams the prompt and its continuation to <paramref name="output"/>; returns the generated text.</summary>
    internal static string Generate(DecoderLm model, IVocabulary vocabulary, string prompt, SamplingOptions sampling, TextWriter output, CancellationToken cancellationToken)
    {
        var generator = new TextGenerator(model, vocabulary.EosId);
        int[] promptIds = vocabulary.Encode(prompt);
        var detokenizer = new StreamingDetokenizer(vocabulary, promptIds);
        var text = new System.Text.StringBuilder();
        output.Write(prompt);
        foreach (int id in generator.Generate(promptIds, sampling))
        {
            string delta = detokenizer.Push(id);
            output.Write(delta);
            output.Flush();
            text.Append(delta);
            if (cancellationToken.IsCancellationRequested) break;
        }
        string rest = detokenizer.Flush();
        output.Write(rest);
        output.WriteLine();
        return text.Append(rest).ToString();
    }
}
