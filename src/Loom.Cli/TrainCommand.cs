using System.ComponentModel;
using Loom.Core;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom train</c>.</summary>
public sealed class TrainCommand : Command<TrainCommand.Settings>
{
    /// <summary>Options of <c>loom train</c>.</summary>
    public sealed class Settings : ConfigSettings
    {
        /// <summary>Resume from the run folder's newest checkpoint.</summary>
        [CommandOption("--resume")]
        [Description("Continue the run in --run-dir from its newest checkpoint, bit-identically (uses the run's saved config.json plus any --set).")]
        public bool Resume { get; init; }

        /// <summary>The checkpoint whose weights the run starts from.</summary>
        [CommandOption("--init-from <CHECKPOINT>")]
        [Description("Fine-tune: start from this checkpoint's weights (a run folder, a checkpoints/step_* folder, or hf:DIR for a Hugging Face folder); the same as --set training.init_from=CHECKPOINT. Without --preset or --config the run takes the checkpoint's model options (and its byte or tiktoken vocabulary, or the folder's tokenizer.json). With --set lora.rank=8 only LoRA adapters train.")]
        public string? InitFrom { get; init; }

        /// <inheritdoc />
        public override IEnumerable<string> Overrides()
        {
            if (InitFrom is null || Resume) return base.Overrides();
            var implied = new List<string> { $"training.init_from={System.Text.Json.JsonSerializer.Serialize(InitFrom)}" };
            if (Preset is null && Config is null) implied.AddRange(LoraCommands.BaseModelOverrides(InitFrom));
            return implied.Concat(base.Overrides()); // --set comes last, so it can still change any of them
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var run = TrainingSession.Prepare(settings, settings.Resume);
        var result = TrainingSession.Train(run, cancellationToken);
        return result.Interrupted ? 130 : 0;
    }
}
