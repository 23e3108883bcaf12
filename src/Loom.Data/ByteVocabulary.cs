using System.Text;

namespace Loom.Data;

/// <summary>
/// A lossless vocabulary over UTF-8 bytes: ids 0..255 are the bytes, 256 is EOS and 257 is PAD.
/// Any text round-trips; decoding invalid or truncated UTF-8 yields U+FFFD for the bad bytes.
/// </summary>
public sealed class ByteVocabulary : IVocabulary
{
    /// <summary>The id of the end-of-sequence token.</summary>
    public const int Eos = 256;

    /// <summary>The id of the padding token.</summary>
    public const int Pad = 257;

    /// <inheritdoc />
    public string Name => "byte";

    /// <inheritdoc />
    public int Size => 258;

    /// <inheritdoc />
    public int EosId => Eos;

    /// <inheritdoc />
    public int PadId => Pad;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new byte[ids.Length];
        int n = 0;
        foreach (int id in ids)
        {
            if (id is Eos or Pad) continue;
            if ((uint)id > 255)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is outside the byte vocabulary (0..{Size - 1})");
            bytes[n++] = (byte)id;
        }
        // Encoding.UTF8 replaces invalid sequences with U+FFFD rather than throwing, which is what a
        // sampler's partial output needs.
        return Encoding.UTF8.GetString(bytes, 0, n);
    }
}
