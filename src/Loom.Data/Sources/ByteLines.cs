namespace Loom.Data.Sources;

/// <summary>
/// Splits a stream into lines of raw bytes at <c>\n</c>, without decoding, so that a line with bad
/// UTF-8 can be reported (or skipped) on its own instead of breaking a text reader for the whole file.
/// </summary>
internal static class ByteLines
{
    /// <summary>Yields each line without its <c>\n</c> (a trailing <c>\r</c> is kept; JSON treats it as white space).</summary>
    internal static IEnumerable<ReadOnlyMemory<byte>> Read(Stream stream, int chunkSize = 1 << 16)
    {
        byte[] buffer = new byte[chunkSize];
        int start = 0, end = 0;
        while (true)
        {
            int newline = Array.IndexOf(buffer, (byte)'\n', start, end - start);
            if (newline >= 0)
            {
                yield return buffer.AsMemory(start, newline - start).ToArray();
                start = newline + 1;
                continue;
            }
            // No full line left in the buffer: keep the partial line and read more behind it.
            if (start > 0)
            {
                Buffer.BlockCopy(buffer, start, buffer, 0, end - start);
                end -= start;
                start = 0;
            }
            if (end == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            int read = stream.Read(buffer, end, buffer.Length - end);
            if (read == 0)
            {
                if (end > 0) yield return buffer.AsMemory(0, end).ToArray();
                yield break;
            }
            end += read;
        }
    }
}
