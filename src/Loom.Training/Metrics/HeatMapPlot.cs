using System.Globalization;
using SkiaSharp;

namespace Loom.Training.Metrics;

/// <summary>One panel of a <see cref="HeatMapPlot"/>: a grid of values in [0, 1] with its labels.</summary>
/// <param name="Title">Shown above the panel.</param>
/// <param name="RowLabels">One per row, top to bottom.</param>
/// <param name="ColumnLabels">One per column, left to right.</param>
/// <param name="Values">Values[row][column], each in [0, 1] (NaN: no value, drawn grey).</param>
public sealed record HeatMapPanel(string Title, IReadOnlyList<string> RowLabels, IReadOnlyList<string> ColumnLabels, IReadOnlyList<IReadOnlyList<double>> Values);

/// <summary>
/// Draws heat maps (e.g. needle-in-a-haystack retrieval accuracy by context length and depth) as one PNG
/// with SkiaSharp: panels side by side, two to a row, each cell coloured from red (0) through yellow to
/// green (1) and labelled with its value as a percentage.
/// </summary>
public static class HeatMapPlot
{
    /// <summary>Width of a cell, in pixels.</summary>
    public const int CellWidth = 64;

    /// <summary>Height of a cell, in pixels.</summary>
    public const int CellHeight = 32;

    private const int Left = 110;        // room for the row labels and the y-axis title
    private const int PanelTop = 40;     // room for the panel title
    private const int Bottom = 56;       // room for the column labels and the x-axis title
    private const int Right = 24;
    private const int TitleHeight = 44;  // the figure's title
    private const int PanelsPerRow = 2;

    /// <summary>The image size, in pixels, of a figure of <paramref name="panels"/> panels of the given grid.</summary>
    public static (int Width, int Height) Size(int panels, int rows, int columns)
    {
        (int w, int h) = PanelSize(rows, columns);
        int across = Math.Min(panels, PanelsPerRow), down = (panels + PanelsPerRow - 1) / PanelsPerRow;
        return (across * w, TitleHeight + down * h);
    }

    /// <summary>The pixel rectangle (left, top, width, height) of cell (<paramref name="row"/>, <paramref name="column"/>) of panel <paramref name="panel"/>.</summary>
    public static (int X, int Y, int Width, int Height) CellBounds(int panel, int row, int column, int rows, int columns)
    {
        (int w, int h) = PanelSize(rows, columns);
        int x = panel % PanelsPerRow * w + Left + column * CellWidth;
        int y = TitleHeight + panel / PanelsPerRow * h + PanelTop + row * CellHeight;
        return (x, y, CellWidth, CellHeight);
    }

    /// <summary>The colour of a value: red at 0, yellow at 0.5, green at 1, linear between; grey for NaN.</summary>
    public static SKColor ColorOf(double value)
    {
        if (double.IsNaN(value)) return new SKColor(200, 200, 200);
        double v = Math.Clamp(value, 0, 1);
        (double r, double g, double b) = v < 0.5
            ? Lerp((215, 48, 39), (254, 224, 139), v / 0.5)
            : Lerp((254, 224, 139), (26, 152, 80), (v - 0.5) / 0.5);
        return new SKColor((byte)Math.Round(r), (byte)Math.Round(g), (byte)Math.Round(b));
    }

    /// <summary>
    /// Draws <paramref name="panels"/> (all of the same grid) under <paramref name="title"/>, with
    /// <paramref name="rowAxis"/> and <paramref name="columnAxis"/> as the axis titles, and writes the PNG.
    /// </summary>
    /// <exception cref="ArgumentException">No panels, panels of different grids, a label count that does not match the values, or a value outside [0, 1].</exception>
    public static void Save(string pngPath, IReadOnlyList<HeatMapPanel> panels, string title, string rowAxis, string columnAxis)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pngPath);
        ArgumentNullException.ThrowIfNull(panels);
        if (panels.Count == 0) throw new ArgumentException("a heat map needs at least one panel", nameof(panels));
        int rows = panels[0].RowLabels.Count, columns = panels[0].ColumnLabels.Count;
        foreach (var p in panels) Check(p, rows, columns);
        (int width, int height) = Size(panels.Count, rows, columns);

        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var typeface = SKTypeface.FromFamilyName("DejaVu Sans") ?? SKTypeface.Default;
        using var titleFont = new SKFont(typeface, 18);
        using var font = new SKFont(typeface, 13);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var fill = new SKPaint { Style = SKPaintStyle.Fill };
        using var grid = new SKPaint { Color = SKColors.White, Style = SKPaintStyle.Stroke, StrokeWidth = 1 };

        canvas.DrawText(title, width / 2f, 28, SKTextAlign.Center, titleFont, ink);
        (int panelWidth, int panelHeight) = PanelSize(rows, columns);
        for (int p = 0; p < panels.Count; p++)
        {
            var panel = panels[p];
            var first = CellBounds(p, 0, 0, rows, columns);
            float gridRight = first.X + columns * CellWidth, gridBottom = first.Y + rows * CellHeight;
            canvas.DrawText(panel.Title, (first.X + gridRight) / 2f, first.Y - 14, SKTextAlign.Center, font, ink);
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < columns; c++)
                {
                    double v = panel.Values[r][c];
                    var (x, y, w, h) = CellBounds(p, r, c, rows, columns);
                    fill.Color = ColorOf(v);
                    var cell = new SKRect(x, y, x + w, y + h);
                    canvas.DrawRect(cell, fill);
                    canvas.DrawRect(cell, grid);
                    string label = double.IsNaN(v) ? "-" : (100 * v).ToString("0", CultureInfo.InvariantCulture);
                    canvas.DrawText(label, x + w / 2f, y + h / 2f + 5, SKTextAlign.Center, font, ink);
                }
                canvas.DrawText(panel.RowLabels[r], first.X - 8, first.Y + r * CellHeight + CellHeight / 2f + 5, SKTextAlign.Right, font, ink);
            }
            for (int c = 0; c < columns; c++)
                canvas.DrawText(panel.ColumnLabels[c], first.X + c * CellWidth + CellWidth / 2f, gridBottom + 18, SKTextAlign.Center, font, ink);
            canvas.DrawText(columnAxis, (first.X + gridRight) / 2f, gridBottom + 42, SKTextAlign.Center, font, ink);
            canvas.Save();
            float panelLeft = p % PanelsPerRow * panelWidth;
            canvas.RotateDegrees(-90, panelLeft + 24, (first.Y + gridBottom) / 2f);
            canvas.DrawText(rowAxis, panelLeft + 24, (first.Y + gridBottom) / 2f, SKTextAlign.Center, font, ink);
            canvas.Restore();
        }

        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        string full = Path.GetFullPath(pngPath);
        if (Path.GetDirectoryName(full) is { Length: > 0 } dir) Directory.CreateDirectory(dir);
        using var stream = File.Create(full);
        data.SaveTo(stream);
    }

    private static (int Width, int Height) PanelSize(int rows, int columns) =>
        (Left + columns * CellWidth + Right, PanelTop + rows * CellHeight + Bottom);

    private static (double, double, double) Lerp((double R, double G, double B) a, (double R, double G, double B) b, double t) =>
        (a.R + (b.R - a.R) * t, a.G + (b.G - a.G) * t, a.B + (b.B - a.B) * t);

    private static void Check(HeatMapPanel panel, int rows, int columns)
    {
        ArgumentNullException.ThrowIfNull(panel);
        if (panel.RowLabels.Count != rows || panel.ColumnLabels.Count != columns)
            throw new ArgumentException($"heat map panel '{panel.Title}' has {panel.RowLabels.Count}×{panel.ColumnLabels.Count} labels where the first panel has {rows}×{columns}: every panel must share the grid");
        if (rows == 0 || columns == 0) throw new ArgumentException($"heat map panel '{panel.Title}' has no cells");
        if (panel.Values.Count != rows || panel.Values.Any(r => r.Count != columns))
            throw new ArgumentException($"heat map panel '{panel.Title}': values must be {rows} rows of {columns}, as its labels");
        foreach (var row in panel.Values)
            foreach (double v in row)
                if (!double.IsNaN(v) && !(v >= 0 && v <= 1))
                    throw new ArgumentException($"heat map panel '{panel.Title}': value {v.ToString(CultureInfo.InvariantCulture)} is outside [0, 1]");
    }
}
