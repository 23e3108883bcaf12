using Loom.Training.Metrics;
using SkiaSharp;
using TorchSharp;

namespace Loom.Training.Tests.Metrics;

/// <summary>
/// TorchSharp 0.107 was built against SkiaSharp 2.88.6 while ScottPlot needs SkiaSharp 3; the build
/// unifies on 3.119.4. These tests check, at run time on this host, that the native libSkiaSharp that
/// lands in the output matches the managed assembly and that TorchSharp's own SkiaSharp calls still bind.
/// </summary>
public sealed class SkiaSharpRuntimeTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Native_libSkiaSharp_is_compatible_with_the_managed_assembly()
    {
        Assert.True(SkiaSharpVersion.CheckNativeLibraryCompatible(throwIfIncompatible: false),
            $"native libSkiaSharp {SkiaSharpVersion.Native} is outside {SkiaSharpVersion.NativeMinimum}..next milestone");
        // SkiaSharp 3.M.x ships native milestone M (libSkiaSharp reports M.x): the two must agree.
        Version managed = typeof(SKBitmap).Assembly.GetName().Version!;
        Assert.Equal(3, managed.Major);
        Assert.Equal(managed.Minor, SkiaSharpVersion.Native.Major);
    }

    [Fact]
    public void TorchSharp_image_summary_decodes_and_resizes_a_loss_plot()
    {
        string png = _dir.File("loss.png");
        MetricEvent[] events = [new(0, MetricEvent.TrainSplit, 5), new(10, MetricEvent.TrainSplit, 4), new(10, MetricEvent.ValidationSplit, 4.5)];
        LossCurvePlot.Save(png, events, "skia check", width: 320, height: 200);

        // Goes through SKBitmap.Decode, Copy, Resize(SKSizeI, SKFilterQuality) and Encode inside TorchSharp,
        // which would throw MissingMethodException if the 2.88 API it was compiled against did not bind.
        Tensorboard.Summary summary = torch.utils.tensorboard.Summary.image("loss_curve", png, rescale: 0.5);

        Tensorboard.Summary.Types.Image image = Assert.Single(summary.Value).Image;
        Assert.Equal(320, image.Width);
        Assert.Equal(200, image.Height);
        byte[] encoded = image.EncodedImageString.ToByteArray();
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, encoded[..4]);

        // The resized image itself: half the size, and still the plot (compared with SkiaSharp's own downscale).
        using var resized = SKBitmap.Decode(encoded);
        Assert.NotNull(resized);
        Assert.Equal((160, 100), (resized.Width, resized.Height));
        using var original = SKBitmap.Decode(png);
        using var reference = original.Resize(new SKImageInfo(160, 100, resized.ColorType, resized.AlphaType), new SKSamplingOptions(SKCubicResampler.Mitchell));
        double difference = 0;
        for (int y = 0; y < 100; y++)
            for (int x = 0; x < 160; x++)
            {
                SKColor a = resized.GetPixel(x, y), b = reference.GetPixel(x, y);
                difference += Math.Abs(a.Red - b.Red) + Math.Abs(a.Green - b.Green) + Math.Abs(a.Blue - b.Blue);
            }
        Assert.InRange(difference / (160 * 100 * 3), 0, 12); // mean difference per channel, out of 255
        // Not a blank image: a white background with darker text and axes and the blue curve.
        Assert.Contains(resized.Pixels, p => p.Red > 240 && p.Green > 240 && p.Blue > 240);
        Assert.Contains(resized.Pixels, p => p.Red + p.Green + p.Blue < 300);
        Assert.Contains(resized.Pixels, p => p.Blue > p.Red + 60);
    }
}
