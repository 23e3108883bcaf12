using Loom.Training.Metrics;
using SkiaSharp;

namespace Loom.Training.Tests.Metrics;

public sealed class HeatMapPlotTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static HeatMapPanel Panel(string title, Func<int, int, double> value) => new(title,
        ["0%", "25%", "50%", "75%", "100%"], ["256", "512", "1k", "2k", "4k", "8k"],
        [.. Enumerable.Range(0, 5).Select(r => (IReadOnlyList<double>)[.. Enumerable.Range(0, 6).Select(c => value(r, c))])]);

    [Fact]
    public void Writes_a_PNG_of_the_expected_size_whose_cells_have_their_values_colours()
    {
        string png = _dir.File("needle.png");
        var panels = new[] { Panel("none", (r, c) => c < 2 ? 1 : 0), Panel("YaRN", (r, c) => (r + c) / 9.0), Panel("linear", (r, c) => 0.5) };
        HeatMapPlot.Save(png, panels, "needle retrieval", "needle depth", "context length (tokens)");

        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal(HeatMapPlot.Size(3, 5, 6), (bitmap.Width, bitmap.Height));
        foreach (var (panel, row, column) in new[] { (0, 0, 0), (0, 4, 5), (1, 2, 3), (1, 4, 5), (2, 1, 1) })
        {
            var (x, y, _, _) = HeatMapPlot.CellBounds(panel, row, column, 5, 6);
            SKColor expected = HeatMapPlot.ColorOf(panels[panel].Values[row][column]);
            Assert.Equal(expected, bitmap.GetPixel(x + 4, y + 4)); // a corner, clear of the cell's label
        }
        Assert.Equal(new SKColor(26, 152, 80), HeatMapPlot.ColorOf(1)); // green
        Assert.Equal(new SKColor(215, 48, 39), HeatMapPlot.ColorOf(0)); // red
        // The label is drawn: the middle of a cell holds darker pixels than its colour.
        var (cx, cy, w, h) = HeatMapPlot.CellBounds(0, 0, 0, 5, 6);
        bool text = false;
        for (int dx = -12; dx <= 12 && !text; dx++)
            for (int dy = -6; dy <= 6 && !text; dy++)
                text = bitmap.GetPixel(cx + w / 2 + dx, cy + h / 2 + dy).Green < 100;
        Assert.True(text, "no label drawn in the cell");
    }

    [Fact]
    public void Values_outside_zero_to_one_or_mismatched_panels_are_refused()
    {
        string png = _dir.File("bad.png");
        Assert.Contains("outside [0, 1]", Assert.Throws<ArgumentException>(() => HeatMapPlot.Save(png, [Panel("a", (r, c) => 1.5)], "t", "y", "x")).Message);
        var small = new HeatMapPanel("b", ["0%"], ["256"], [[0.5]]);
        Assert.Contains("share the grid", Assert.Throws<ArgumentException>(() => HeatMapPlot.Save(png, [Panel("a", (r, c) => 0), small], "t", "y", "x")).Message);
        Assert.False(File.Exists(png));
    }
}
