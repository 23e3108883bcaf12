using System.Globalization;

namespace Loom.Models.Quantization;

/// <summary>What <see cref="LanguageModel.Quantize"/> did and the memory it saved, in bytes.</summary>
/// <param name="Mode">The storage the linear kernels were converted to.</param>
/// <param name="Layers">Number of linear kernels quantized.</param>
/// <param name="LinearBytesBefore">Bytes of those kernels as float weights.</param>
/// <param name="LinearBytesAfter">Bytes of their quantized values plus scales.</param>
/// <param name="ModelBytesBefore">Bytes of all the model's weights before (embeddings, norms, biases and kernels).</param>
/// <param name="ModelBytesAfter">Bytes of all the model's weights after.</param>
public sealed record QuantizationReport(
    QuantizationMode Mode, int Layers, long LinearBytesBefore, long LinearBytesAfter, long ModelBytesBefore, long ModelBytesAfter)
{
    /// <summary>How many times smaller the linear kernels became.</summary>
    public double LinearRatio => LinearBytesAfter == 0 ? 1 : (double)LinearBytesBefore / LinearBytesAfter;

    /// <summary>How many times smaller the whole model became.</summary>
    public double ModelRatio => ModelBytesAfter == 0 ? 1 : (double)ModelBytesBefore / ModelBytesAfter;

    /// <summary>One line for a console, e.g. "quantized 12 linear weights to int8: 6.1 MB -> 1.6 MB (3.9x smaller); model 6.5 MB -> 2.0 MB (3.3x smaller)".</summary>
    public override string ToString() => string.Format(CultureInfo.InvariantCulture,
        "quantized {0} linear weights to {1}: {2} -> {3} ({4:F1}x smaller); model {5} -> {6} ({7:F1}x smaller)",
        Layers, Mode.ToString().ToLowerInvariant(), Megabytes(LinearBytesBefore), Megabytes(LinearBytesAfter), LinearRatio,
        Megabytes(ModelBytesBefore), Megabytes(ModelBytesAfter), ModelRatio);

    private static string Megabytes(long bytes) => bytes >= 1_000_000
        ? string.Format(CultureInfo.InvariantCulture, "{0:F1} MB", bytes / 1e6)
        : string.Format(CultureInfo.InvariantCulture, "{0:F1} kB", bytes / 1e3);
}
