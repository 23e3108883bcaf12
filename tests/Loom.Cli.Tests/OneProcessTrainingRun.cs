using System.Text.Json;

namespace Loom.Cli.Tests;

/// <summary>
/// The one-process run that the multi-process training tests compare against: a small repetitive text and
/// <c>loom train</c> on it for a number of steps, in a temporary folder shared by a test class.
/// </summary>
public abstract class OneProcessTrainingRun : IDisposable
{
    private static readonly string[] Words =
        "it is a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife".Split(' ');

    private readonly TempDirectory temp;
    private readonly string[] settings;

    /// <summary>Writes the text and trains run "one" for <paramref name="steps"/> steps with <paramref name="settings"/>.</summary>
    protected OneProcessTrainingRun(string prefix, string[] settings, int steps)
    {
        temp = new TempDirectory(prefix);
        this.settings = settings;
        File.WriteAllText(Text, string.Join(' ', Enumerable.Range(0, 3000).Select(i => Words[(i * 7 + i / 5) % Words.Length])));
        var run = CliRunner.Run(Dir, [.. Train("one"), "--set", $"training.steps={steps}"]);
        (ExitCode, Output) = (run.ExitCode, run.Stderr + run.Stdout);
    }

    public string Dir => temp.Path;

    public string Text => temp.File("text.txt");

    public int ExitCode { get; }

    public string Output { get; }

    /// <summary><c>loom train</c>'s arguments for run folder <paramref name="runDir"/> with the class's settings.</summary>
    public string[] Train(string runDir) => ["train", "--data", Text, "--run-dir", Path.Combine(Dir, runDir), .. settings];

    /// <summary>The checkpoint folder of <paramref name="runDir"/> at <paramref name="step"/>.</summary>
    public string Checkpoint(string runDir, int step) => Path.Combine(Dir, runDir, "checkpoints", $"step_{step:D8}");

    /// <summary>(step, loss) of every training line of a run's metrics.jsonl.</summary>
    public static List<(long Step, double Loss)> TrainLosses(string runDir) =>
        [.. File.ReadLines(Path.Combine(runDir, "metrics.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("split").GetString() == "train")
            .Select(e => (e.GetProperty("step").GetInt64(), e.GetProperty("loss").GetDouble()))];

    public void Dispose()
    {
        temp.Dispose();
        GC.SuppressFinalize(this);
    }
}
