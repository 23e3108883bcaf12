using System.ComponentModel;
using System.Diagnostics;
using Loom.Inference;
using Loom.Models;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom demo</c>: the README's first command.</summary>
public sealed class DemoCommand : Command<DemoCommand.Settings>
{
    /// <summary>Options of <c>loom demo</c> (all optional).</summary>
    public sealed class Settings : ConfigSettings
    {
        /// <summary>Prompt for the sample.</summary>
        [CommandOption("--prompt <TEXT>")]
        [Description("Prompt for the generated sample.")]
        public string Prompt { get; init; } = "It was a fine morning, and Elizabeth";
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var demoSettings = new Settings
        {
            Config = settings.Config ?? "demo", Preset = settings.Preset, Data = settings.Data, Task = settings.Task, Set = settings.Set,
            Device = settings.Device, Threads = settings.Threads, Prompt = settings.Prompt,
            RunDir = settings.RunDir ?? Path.Combine("runs", $"demo-{DateTime.Now:yyyyMMdd-HHmmss}"),
        };
        var run = TrainingSession.Prepare(demoSettings, resume: false);
        var result = TrainingSession.Train(run, cancellationToken);
        if (result.Checkpoint is null) return 1;

        Console.WriteLine();
        Console.WriteLine($"--- sample (temperature 0.8, top-p 0.95, seed 1) from {result.Checkpoint} ---");
        var (model, manifest) = ModelCheckpoint.Load(result.Checkpoint, Loom.Core.Devices.Resolve(run.Config.Device));
        using (model)
        {
            var sampling = new SamplingOptions { MaxTokens = 400, Temperature = 0.8, TopP = 0.95, Seed = 1 };
            GenerateCommand.Generate(model, CheckpointVocabulary.Load(result.Checkpoint, manifest), settings.Prompt, sampling, Console.Out, cancellationToken);
        }
        Console.WriteLine("---");
        Console.WriteLine(FormattableString.Invariant(
            $"demo finished in {clock.Elapsed.TotalMinutes:F1} min: held-out loss {result.ValidationLoss:F3} nats/byte after {result.Step} steps. Try: ./loom generate --checkpoint {run.RunDirectory} --prompt \"...\""));
        return result.Interrupted ? 130 : 0;
    }
}
