using System.ComponentModel;
using Loom.Core;
using Loom.Models;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom eval</c>.</summary>
public sealed class EvalCommand : Command<EvalCommand.Settings>
{
    /// <summary>Options of <c>loom eval</c>.</summary>
    public sealed class Settings : CheckpointSettings
    {

        /// <summary>Held-out text.</summary>
        [CommandOption("--data <FILE_OR_DIR>")]
        [Description("Score this text instead of the run's held-out split (all of it is held out).")]
        public string? Data { get; init; }

        /// <summary>Batches to score.</summary>
        [CommandOption("--batches <N>")]
        [Description("Most batches to score (default: the run's training.eval_batches).")]
        public int? Batches { get; init; }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var config = RunConfigLoader.ReadResolved(Path.Combine(checkpoint, "config.json"));
        var overrides = new List<string>();
        if (settings.Batches is int b) overrides.Add($"training.eval_batches={b}");
        config = config with
        {
            Data = settings.Data is null ? config.Data : config.Data with { Path = settings.Data },
            Training = settings.Batches is int n ? config.Training with { EvalBatches = n } : config.Training,
            Device = settings.Device ?? config.Device,
        };
        config.Validate();
        var device = Devices.Resolve(config.Device);
        var data = TrainingDataLoader.Load(config.Data, config.Training, new Progress<string>(m => Console.Error.WriteLine(m)), evaluateAll: settings.Data is not null);
        var (model, manifest) = ModelCheckpoint.Load(checkpoint, device);
        using (model)
        {
            var result = Evaluator.Evaluate(model, data.Validation, config.Training.EvalBatches, data.ValidationBytesPerToken, device);
            Console.WriteLine(FormattableString.Invariant(
                $"checkpoint {checkpoint} (step {manifest.Step}) on {data.Description}: loss {result.Loss:F4} nats/token, perplexity {result.Perplexity:F3}, {result.BitsPerByte:F4} bits/byte over {result.Tokens} tokens"));
        }
        return 0;
    }
}
