using System.Globalization;
using Loom.Training;
using Loom.Training.Metrics;
using Loom.Training.Recovery;
using Spectre.Console;

namespace Loom.Cli;

/// <summary>
/// Shows training progress: a live Spectre.Console bar (step, loss, tokens/s, ETA) on a terminal,
/// or one plain line per logging point when output is redirected.
/// </summary>
internal sealed class ConsoleProgress : ITrainingObserver
{
    private readonly ProgressTask? task;
    private long total;
    private string loss = "…", throughput = "…", validation = "";

    /// <summary>Creates the observer; <paramref name="task"/> is null when the console is not interactive.</summary>
    public ConsoleProgress(ProgressTask? task) => this.task = task;

    /// <summary>Runs <paramref name="work"/> with a live progress bar when the console supports one.</summary>
    public static T Show<T>(Func<ConsoleProgress, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
            return work(new ConsoleProgress(null));
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                     new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx => result = work(new ConsoleProgress(ctx.AddTask("training", autoStart: true))));
        return result;
    }

    public void OnStart(long startStep, long totalSteps)
    {
        total = totalSteps;
        if (task is null)
        {
            Console.WriteLine(startStep > 0 ? $"resuming at step {startStep} of {totalSteps}" : $"training for {totalSteps} steps");
            return;
        }
        task.MaxValue = totalSteps;
        task.Value = startStep;
        Describe(startStep);
    }

    public void OnStep(long step)
    {
        if (task is null) return;
        task.Value = step;
        Describe(step);
    }

    public void OnTrainMetrics(MetricEvent metrics)
    {
        loss = metrics.Loss.ToString("F3", CultureInfo.InvariantCulture);
        throughput = Tokens(metrics.TokensPerSecond ?? 0) + " tok/s";
        if (task is null)
        {
            string mfu = metrics.Mfu is double m ? $"  mfu {m * 100:F1}%" : "";
            Console.WriteLine(FormattableString.Invariant(
                $"step {metrics.Step,6}/{total}  loss {metrics.Loss:F4}  lr {metrics.LearningRate:G3}  grad_norm {metrics.GradNorm:F3}  {throughput}{mfu}  elapsed {metrics.ElapsedSeconds:F0}s"));
        }
    }

    public void OnValidationMetrics(MetricEvent metrics)
    {
        if (metrics.Task is null) validation = FormattableString.Invariant($" val {metrics.Loss:F3}");
        string scores = string.Concat((metrics.Metrics ?? new Dictionary<string, double>()).Select(m => FormattableString.Invariant($"  {m.Key} {m.Value:F2}")));
        string line = FormattableString.Invariant(
            $"step {metrics.Step,6}/{total}  {(metrics.Task is null ? "held-out" : metrics.Task)} loss {metrics.Loss:F4} nats/token  perplexity {metrics.Perplexity:F3}  {metrics.BitsPerByte:F4} bits/byte{scores}");
        if (task is null) Console.WriteLine(line);
        else AnsiConsole.MarkupLine("[grey]{0}[/]", Markup.Escape(line));
    }

    public void OnCheckpoint(string directory)
    {
        if (task is null) Console.WriteLine($"checkpoint: {directory}");
    }

    public void OnRollback(SpikeRollback rollback)
    {
        string line = rollback.ToString();
        if (task is null) Console.WriteLine(line);
        else AnsiConsole.MarkupLine("[yellow]{0}[/]", Markup.Escape(line));
    }

    private void Describe(long step) =>
        task!.Description = Markup.Escape(FormattableString.Invariant($"step {step}/{total}  loss {loss}{validation}  {throughput}"));

    private static string Tokens(double perSecond) => perSecond >= 1e6
        ? FormattableString.Invariant($"{perSecond / 1e6:F2}M")
        : perSecond >= 1e3 ? FormattableString.Invariant($"{perSecond / 1e3:F1}k") : FormattableString.Invariant($"{perSecond:F0}");
}
