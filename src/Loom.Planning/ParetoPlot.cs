using ScottPlot;

namespace Loom.Planning;

/// <summary>Draws the latency–MFU Pareto frontiers of prefill and decode, like Figure 1 of Pope et al.</summary>
public static class ParetoPlot
{
    /// <summary>
    /// Writes a PNG to <paramref name="pngPath"/>: every feasible point of each phase faintly, its frontier as a
    /// line, latency in milliseconds on a log scale (decode per token, prefill per pass), MFU in percent.
    /// </summary>
    /// <exception cref="ArgumentException">No feasible point to draw.</exception>
    public static void Save(string pngPath, string title, IReadOnlyList<ParetoPoint> prefill, IReadOnlyList<ParetoPoint> decode,
        int width = 900, int height = 560)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pngPath);
        ArgumentNullException.ThrowIfNull(title);
        ArgumentNullException.ThrowIfNull(prefill);
        ArgumentNullException.ThrowIfNull(decode);
        if (prefill.Count == 0 && decode.Count == 0) throw new ArgumentException("no feasible layout and batch size to plot");
        using var plot = new Plot();
        Add(plot, prefill, "prefill", Colors.C0);
        Add(plot, decode, "decode", Colors.C1);
        // Log scale by hand: plot log10(ms) and label the ticks with 10^x.
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = x => Math.Pow(10, x).ToString("#,0.###", System.Globalization.CultureInfo.InvariantCulture),
        };
        plot.Title(title);
        plot.XLabel("latency (ms; decode per token, prefill per pass)");
        plot.YLabel("MFU (%)");
        plot.ShowLegend(Alignment.UpperLeft);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(pngPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllBytes(pngPath, plot.GetImageBytes(width, height, ImageFormat.Png));
    }

    private static void Add(Plot plot, IReadOnlyList<ParetoPoint> points, string label, Color color)
    {
        if (points.Count == 0) return;
        var all = plot.Add.ScatterPoints(points.Select(p => Math.Log10(p.LatencySeconds * 1e3)).ToArray(), points.Select(p => p.Mfu * 100).ToArray(), color.WithAlpha(0.25));
        all.MarkerSize = 4;
        IReadOnlyList<ParetoPoint> frontier = ParetoFrontier.Select(points);
        var line = plot.Add.Scatter(frontier.Select(p => Math.Log10(p.LatencySeconds * 1e3)).ToArray(), frontier.Select(p => p.Mfu * 100).ToArray(), color);
        line.LegendText = $"{label} frontier";
        line.LineWidth = 2;
        line.MarkerSize = 6;
    }
}
