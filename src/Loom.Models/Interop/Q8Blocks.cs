using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// ggml's Q8_0 format: blocks of 32 values along a row, each stored as an f16 scale d = max|x| / 127 followed by the 32
/// signed bytes round(x / d) (rounding half away from zero, as ggml's <c>quantize_row_q8_0_ref</c> does).
/// </summary>
public static class Q8Blocks
{
    /// <summary>Values per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes per block: the f16 scale and 32 signed bytes.</summary>
    public const int BlockBytes = 2 + BlockSize;

    /// <summary>The Q8_0 blocks of <paramref name="values"/>, row by row.</summary>
    /// <exception cref="ArgumentException">A row's length is not a multiple of <see cref="BlockSize"/>.</exception>
    public static byte[] Quantize(Tensor values, string name)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.shape[^1] % BlockSize != 0)
            throw new ArgumentException($"tensor '{name}' has {values.shape[^1]} values per row: Q8_0 needs a multiple of {BlockSize}; export as f16 or f32");
        using var scope = NewDisposeScope();
        var x = values.detach().cpu().to(float32).reshape(-1, BlockSize);                   // (blocks, 32)
        var scale = x.abs().amax([1], keepdim: true) / 127;                                 // (blocks, 1)
        var inverse = where(scale > 0, 1 / scale, zeros_like(scale));
        var scaled = x * inverse;
        var q = (scaled.sign() * (scaled.abs() + 0.5).floor()).to(int8).contiguous();        // round half away from zero
        var halfScales = scale.to(float16).contiguous();
        byte[] qBytes = q.bytes.ToArray(), dBytes = halfScales.bytes.ToArray();
        long blocks = x.shape[0];
        var output = new byte[blocks * BlockBytes];
        for (long b = 0; b < blocks; b++)
        {
            Array.Copy(dBytes, b * 2, output, b * BlockBytes, 2);
            Array.Copy(qBytes, b * BlockSize, output, b * BlockBytes + 2, BlockSize);
        }
        return output;
    }

    /// <summary>The float32 values that Q8_0 <paramref name="blocks"/> of a tensor of <paramref name="shape"/> stand for (d × q).</summary>
    public static Tensor Dequantize(ReadOnlySpan<byte> blocks, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        for (long b = 0; b < count / BlockSize; b++)
        {
            var block = blocks.Slice(checked((int)(b * BlockBytes)), BlockBytes);
            float d = (float)MemoryMarshal.Read<Half>(block);
            var q = MemoryMarshal.Cast<byte, sbyte>(block[2..]);
            for (int i = 0; i < BlockSize; i++) values[b * BlockSize + i] = d * q[i];
        }
        return tensor(values).reshape(shape);
    }
}
