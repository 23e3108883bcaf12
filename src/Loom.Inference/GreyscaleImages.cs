using SkiaSharp;

namespace Loom.Inference;

/// <summary>An image that cannot be read: malformed or corrupt data, or a format Loom does not take. The message says which.</summary>
public sealed class ImageInputException(string message, Exception? inner = null) : ArgumentException(message, inner);

/// <summary>Decodes PNG and JPEG images (with SkiaSharp) into what an image + text model reads: greyscale, square, in [0, 1].</summary>
public static class GreyscaleImages
{
    /// <summary>
    /// Decodes <paramref name="bytes"/>, a PNG or JPEG file, resizes it to <paramref name="size"/>×<paramref name="size"/>
    /// (bilinear) and converts it to greyscale (ITU-R BT.601 luma; transparent pixels count as black): row-major pixels in [0, 1].
    /// </summary>
    /// <exception cref="ImageInputException">The bytes are not an image, are corrupt or truncated, or are another format (GIF, WebP, ...).</exception>
    public static float[] Decode(ReadOnlySpan<byte> bytes, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        if (bytes.IsEmpty) throw new ImageInputException("the image is empty");
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data)
            ?? throw new ImageInputException("the image data is malformed: it is not a PNG or JPEG file (or any image format SkiaSharp recognises)");
        if (codec.EncodedFormat is not (SKEncodedImageFormat.Png or SKEncodedImageFormat.Jpeg))
            throw new ImageInputException($"unsupported image format {codec.EncodedFormat.ToString().ToUpperInvariant()}: send PNG or JPEG");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var decoded = new SKBitmap(info);
        var result = codec.GetPixels(info, decoded.GetPixels());
        if (result != SKCodecResult.Success)
            throw new ImageInputException($"the {codec.EncodedFormat.ToString().ToUpperInvariant()} image is corrupt or truncated ({result})");
        using var resized = decoded.Resize(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Premul), new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None))
            ?? throw new ImageInputException($"the image could not be resized to {size}x{size}");
        var rgba = resized.GetPixelSpan();
        var grey = new float[size * size];
        for (int i = 0; i < grey.Length; i++)
            grey[i] = (0.299f * rgba[4 * i] + 0.587f * rgba[4 * i + 1] + 0.114f * rgba[4 * i + 2]) / 255f;
        return grey;
    }

    /// <summary>Encodes greyscale pixels in [0, 1], <paramref name="size"/>×<paramref name="size"/> row-major, as a PNG file (for tests and examples).</summary>
    public static byte[] EncodePng(IReadOnlyList<float> pixels, int size)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.Count != size * size) throw new ArgumentException($"{pixels.Count} pixels are not {size}x{size}", nameof(pixels));
        using var bitmap = new SKBitmap(new SKImageInfo(size, size, SKColorType.Gray8, SKAlphaType.Opaque));
        var span = bitmap.GetPixelSpan();
        var bytes = new byte[span.Length];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                bytes[y * bitmap.RowBytes + x] = (byte)Math.Clamp(MathF.Round(pixels[y * size + x] * 255f), 0, 255);
        System.Runtime.InteropServices.Marshal.Copy(bytes, 0, bitmap.GetPixels(), bytes.Length);
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
