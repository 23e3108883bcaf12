using System.Buffers.Binary;
using System.IO.Compression;

namespace Loom.Data;

/// <summary>
/// Reads an R lazy-load database: the <c>.rdb</c>/<c>.rdx</c> pair in an installed package's
/// <c>data/</c> or <c>R/</c> folder.
/// </summary>
/// <remarks>
/// The <c>.rdb</c> holds blobs back to back, each a 4-byte big-endian uncompressed length then a zlib
/// stream holding one <see cref="RSerialization"/> object. The <c>.rdx</c> is a gzip-compressed
/// serialized list whose <c>variables</c> element maps each object's name to its blob's
/// (offset, length) in the <c>.rdb</c>.
/// </remarks>
public static class RLazyLoadDatabase
{
    /// <summary>Reads every variable that the index names.</summary>
    /// <param name="rdx">The index file's bytes.</param>
    /// <param name="rdb">The database file's bytes.</param>
    /// <returns>Each variable's name and value, in the index's order.</returns>
    /// <exception cref="InvalidDataException">Either file is malformed.</exception>
    public static IReadOnlyList<KeyValuePair<string, object?>> ReadVariables(byte[] rdx, byte[] rdb)
    {
        ArgumentNullException.ThrowIfNull(rdx);
        ArgumentNullException.ThrowIfNull(rdb);
        byte[] index;
        try
        {
            using var gzip = new GZipStream(new MemoryStream(rdx, writable: false), CompressionMode.Decompress);
            using var buffer = new MemoryStream();
            gzip.CopyTo(buffer);
            index = buffer.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"R .rdx index is not gzip data ({e.Message})", e);
        }
        if (RSerialization.Unserialize(index) is not RList { Names: not null } top || top["variables"] is not RList { Names: { } names } variables)
            throw new InvalidDataException("R .rdx index lacks a named 'variables' list");

        var result = new List<KeyValuePair<string, object?>>(variables.Items.Count);
        for (int i = 0; i < variables.Items.Count; i++)
        {
            string name = names[i] ?? throw new InvalidDataException($"R .rdx variable {i} has an NA name");
            if (variables.Items[i] is not int[] { Length: 2 } span)
                throw new InvalidDataException($"R .rdx entry for '{name}' is not an (offset, length) pair");
            result.Add(new(name, ReadBlob(rdb, span[0], span[1])));
        }
        return result;
    }

    /// <summary>Reads the blob at the given offset of a <c>.rdb</c> file.</summary>
    /// <param name="rdb">The database file's bytes.</param>
    /// <param name="offset">The blob's byte offset.</param>
    /// <param name="length">The blob's length in bytes, including its 4-byte header.</param>
    /// <returns>The unserialized object.</returns>
    /// <exception cref="InvalidDataException">The range lies outside the file or the blob is malformed.</exception>
    public static object? ReadBlob(byte[] rdb, int offset, int length)
    {
        ArgumentNullException.ThrowIfNull(rdb);
        if (offset < 0 || length < 5 || offset > rdb.Length - length)
            throw new InvalidDataException($"R .rdb blob at offset {offset} with length {length} lies outside the {rdb.Length}-byte file");
        int expected = BinaryPrimitives.ReadInt32BigEndian(rdb.AsSpan(offset, 4));
        if (expected < 0) throw new InvalidDataException($"R .rdb blob at offset {offset} declares negative length {expected}");
        var data = new byte[expected];
        try
        {
            using var zlib = new ZLibStream(new MemoryStream(rdb, offset + 4, length - 4, writable: false), CompressionMode.Decompress);
            zlib.ReadExactly(data);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            throw new InvalidDataException($"R .rdb blob at offset {offset} is not a zlib stream of {expected} bytes ({e.Message})", e);
        }
        return RSerialization.Unserialize(data);
    }
}
