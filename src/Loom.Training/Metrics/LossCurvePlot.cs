using ScottPlot;

namespace Loom.Training.Metrics;

/// <summary>Draws the loss curves of a run (train and validation loss against step) as a PNG.</summary>
public static class LossCurvePlot
{
    /// <summary>The image width used when none is given, in pixels.</summary>
    public const int DefaultWidth = 1000;

    /// <summary>The image height used when none is given, in pixels.</summary>
    public const int DefaultHeight = 600;

    /// <summary>
    /// Plots train loss and validation loss against step, with a legend, the axis labels <c>step</c>
    /// and <c>loss (nats/token)</c> and <paramref name="title"/>, and saves it as a PNG.
    /// </summary>
    /// <remarks>
    /// <para>The image is written to a temporary file in the same directory and then renamed over
    /// <paramref name="pngPath"/>, so a viewer refreshing the file during training never sees half an image.</para>
    /// <para>Each series is sorted by step, and where a step appears more than once (a run resumed from
    /// a checkpoint older than its last logged step re-logs those steps) the last event wins, so the
    /// curve follows the run that continued. Non-finite losses (a diverged step) are left out because
    /// they have no place on a linear axis. A split with no events is simply not drawn, so a plot made
    /// before the first evaluation shows the train curve alone.</para>
    /// </remarks>
    /// <param name="pngPath">Where to write the PNG; its directory is created if needed and an existing file is replaced.</param>
    /// <param name="events">The run's events, in any order (as returned by <see cref="JsonlMetricSink.ReadAll"/>).</param>
    /// <param name="title">The plot title.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="height">Image height in pixels.</param>
    /// <exception cref="ArgumentException">
    /// There is no finite loss to plot (including an empty list). This throws rather than writing an empty
    /// chart, because a blank image on disk would look like a plot of a run that logged nothing wrong.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is not positive.</exception>
    public static void Save(string pngPath, IReadOnlyList<MetricEvent> events, string title,
        int width = DefaultWidth, int height = DefaultHeight)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pngPath);
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(title);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);

        (double[] trainSteps, double[] trainLoss) = Series(events, MetricEvent.TrainSplit);
        (double[] validSteps, double[] validLoss) = Series(events, MetricEvent.ValidationSplit);
        if (trainSteps.Length == 0 && validSteps.Length == 0)
            throw new ArgumentException(
                events.Count == 0 ? "no events to plot" : "no event has a finite loss to plot", nameof(events));

        var plot = new Plot();
        try
        {
            if (trainSteps.Length > 0)
            {
                var train = plot.Add.ScatterLine(trainSteps, trainLoss, Colors.C0);
                train.LegendText = "train";
                train.LineWidth = 1.5f;
            }
            if (validSteps.Length > 0)
            {
                // Markers as well as a line: evaluations are sparse, and a lone first evaluation
                // would otherwise be invisible.
                var validation = plot.Add.Scatter(validSteps, validLoss, Colors.C1);
                validation.LegendText = "validation";
                validation.LineWidth = 2;
                validation.MarkerSize = 6;
            }
            plot.Title(title);
            plot.XLabel("step");
            plot.YLabel("loss (nats/token)");
            plot.ShowLegend(Alignment.UpperRight);

            byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
            WriteAtomically(pngPath, png);
        }
        finally
        {
            plot.Dispose();
        }
    }

    private static (double[] Steps, double[] Loss) Series(IReadOnlyList<MetricEvent> events, string split)
    {
        var lastByStep = new SortedDictionary<long, double>();
        foreach (MetricEvent e in events)
        {
            ArgumentNullException.ThrowIfNull(e, nameof(events));
            if (e.Split != split || e.Task is not null || e.Event is not null) // per-task and event lines stay in the logs, not on the run's curve
                continue;
            // Later events overwrite earlier ones, including with a non-finite loss that then drops the
            // point: the resumed run's value is the truth for that step.
            lastByStep[e.Step] = e.Loss;
        }
        var steps = new List<double>(lastByStep.Count);
        var loss = new List<double>(lastByStep.Count);
        foreach ((long step, double value) in lastByStep)
        {
            if (!double.IsFinite(value))
                continue;
            steps.Add(step);
            loss.Add(value);
        }
        return (steps.ToArray(), loss.ToArray());
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir))
            Directory.CreateDirectory(dir);
        // Same directory, so the rename stays on one file system and is atomic.
        string temp = $"{full}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
                File.Delete(temp);
        }
    }
}
