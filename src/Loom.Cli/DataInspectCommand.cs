using System.ComponentModel;
using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Data.Tasks;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom data inspect</c>: a task's examples and the decoder features they become.</summary>
public sealed class DataInspectCommand : Command<DataInspectCommand.Settings>
{
    /// <summary>Options of <c>loom data inspect</c>.</summary>
    public sealed class Settings : TaskFolderSettings
    {
        /// <summary>Task name.</summary>
        [CommandArgument(0, "<TASK>")]
        [Description("A registered task (see loom data list) or a task file (.json).")]
        public string Task { get; init; } = "";

        /// <summary>Split.</summary>
        [CommandOption("--split <SPLIT>")]
        [Description("Split to read (default validation).")]
        public string Split { get; init; } = "validation";

        /// <summary>How many examples.</summary>
        [CommandOption("-n <N>")]
        [Description("Number of examples (default 3).")]
        public int Count { get; init; } = 3;

        /// <summary>Vocabulary spec.</summary>
        [CommandOption("--vocabulary <SPEC>")]
        [Description("Vocabulary: byte (default), tiktoken:NAME, hf:PATH (tokenizer.json) or a .model file.")]
        public string Vocabulary { get; init; } = "byte";

        /// <summary>Row length of the packed features shown.</summary>
        [CommandOption("--sequence-length <L>")]
        [Description("Row length of the packed decoder features shown (default 64).")]
        public int SequenceLength { get; init; } = 64;

        /// <inheritdoc />
        public override Spectre.Console.ValidationResult Validate() =>
            Count <= 0 ? Spectre.Console.ValidationResult.Error("-n must be positive")
            : SequenceLength <= 1 ? Spectre.Console.ValidationResult.Error("--sequence-length must be at least 2")
            : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var vocabulary = Vocabularies.Create(settings.Vocabulary);
        var task = TaskRegistry.Find(settings.Registry(vocabulary, new Progress<string>(m => Console.Error.WriteLine(m))), settings.Task, vocabulary);
        var examples = task.GetDataset(settings.Split).Take(settings.Count).ToList();
        for (int i = 0; i < examples.Count; i++)
        {
            Console.WriteLine($"--- {task.Name}/{settings.Split} example {i}");
            foreach (var (name, text) in examples[i].Texts)
                Console.WriteLine($"{name}: {Shorten(text)}");
            foreach (var (name, ids) in examples[i].Tokens)
                Console.WriteLine($"{name} tokens ({ids.Length}): [{string.Join(", ", ids.Take(16))}{(ids.Length > 16 ? ", ..." : "")}]");
        }

        // The decoder features these examples become in training: inputs ++ targets per segment (inputs
        // shortened from the front to fit), loss on the targets only, packed several to a row.
        if (examples.Count > 0 && examples[0].Tokens.ContainsKey("targets"))
        {
            var converter = new PrefixLmFeatureConverter(PrefixLmFeatureOptions.ForVocabulary(vocabulary, settings.SequenceLength));
            int room = PackedTrainingBatches.TargetsRoom(examples.Select(e => ((e.Tokens.GetValueOrDefault("inputs") ?? []).Length, e.Tokens["targets"].Length)), settings.SequenceLength);
            var pairs = examples.Select(e => PackedTrainingBatches.Fit(e.Tokens.GetValueOrDefault("inputs") ?? [], e.Tokens["targets"], settings.SequenceLength, room));
            var (rows, stats) = converter.Convert(pairs);
            var row = rows[0];
            int firstLoss = Math.Max(0, Array.IndexOf(row.LossWeights, 1));
            int from = Math.Max(0, Math.Min(firstLoss - 4, settings.SequenceLength - 24));
            string Window(int[] values) => $"[{(from > 0 ? "..., " : "")}{string.Join(", ", values.Skip(from).Take(24))}{(from + 24 < values.Length ? ", ..." : "")}]";
            Console.WriteLine($"--- training features, row 0 of {rows.Count} (length {settings.SequenceLength}, efficiency {stats.Efficiency:P1}), positions {from}..{from + 23}");
            Console.WriteLine($"tokens:       {Window(row.Tokens)}");
            Console.WriteLine($"targets:      {Window(row.Targets)}");
            Console.WriteLine($"segment_ids:  {Window(row.SegmentIds)}");
            Console.WriteLine($"positions:    {Window(row.Positions)}");
            Console.WriteLine($"loss_weights: {Window(row.LossWeights)}");
        }
        return 0;
    }

    private static string Shorten(string text)
    {
        string flat = text.ReplaceLineEndings(" ⏎ ");
        return flat.Length <= 200 ? flat : flat[..200] + $"… ({text.Length:N0} characters)";
    }
}
