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
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var run = TrainingSession.Prepare(settings, settings.Resume);
        var result = TrainingSession.Train(run, cancellationToken);
        return result.Interrupted ? 130 : 0;
    }
}
