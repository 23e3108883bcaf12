using System.Text;
using System.Text.Json;

namespace Loom.Training.Metrics;

/// <summary>
/// Writes events as JSON Lines: one compact JSON object per line, each line handed to the operating
/// system before <see cref="Write"/> returns, so a crashed or killed process loses no logged event.
/// </summary>
/// <remarks>
/// <para>Per-event writes go to the OS page cache, not to the disk: that survives a process crash
/// (the common case) at no measurable cost per step. <see cref="Flush"/> additionally asks the OS to
/// write through to the device, for checkpoint boundaries.</para>
/// <para>In append mode an incomplete last line (the process died in the middle of a write) is cut
/// off before appending, so the resumed run's first event does not get glued onto a broken record.</para>
/// <para>Other processes may read the file while it is being written (for example <see cref="ReadAll"/>
/// from a plotting tool). Instances are safe to use from several threads.</para>
/// </remarks>
public sealed class JsonlMetricSink : IMetricSink
{
    private readonly object _gate = new();
    private FileStream? _stream;

    /// <summary>Opens (and creates, with its directory, if needed) a JSON Lines metrics file.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="append">
    /// True to keep existing events and add after them (a resumed run); false to start the file afresh.
    /// </param>
    public JsonlMetricSink(string path, bool append)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Path = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(Path);
        if (!string.IsNullOrEmpty(dir))
            Directory.CreateDirectory(dir);

        // ReadWrite access because append mode has to look at the tail to find a torn last line.
        var stream = new FileStream(Path, append ? FileMode.OpenOrCreate : FileMode.Create,
            FileAccess.ReadWrite, FileShare.Read);
        try
        {
            if (append)
                TruncateIncompleteLastLine(stream);
            stream.Seek(0, SeekOrigin.End);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        _stream = stream;
    }

    /// <summary>The absolute path of the file being written.</summary>
    public string Path { get; }

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The sink has been disposed.</exception>
    public void Write(MetricEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(e, MetricJsonContext.Default.MetricEvent);
        // One buffer, one write call: the record and its terminator reach the file together, which
        // keeps torn lines to the rare case of a process killed inside the write system call.
        var line = new byte[json.Length + 1];
        json.CopyTo(line, 0);
        line[^1] = (byte)'\n';
        lock (_gate)
        {
            FileStream stream = _stream ?? throw new ObjectDisposedException(nameof(JsonlMetricSink));
            stream.Write(line);
            stream.Flush();
        }
    }

    /// <summary>Writes everything through to the storage device (fsync), not just to the OS.</summary>
    /// <exception cref="ObjectDisposedException">The sink has been disposed.</exception>
    public void Flush()
    {
        lock (_gate)
        {
            FileStream stream = _stream ?? throw new ObjectDisposedException(nameof(JsonlMetricSink));
            stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>Closes the file. Calling it again does nothing.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stream?.Dispose();
            _stream = null;
        }
    }

    /// <summary>
    /// Reads every event of a JSON Lines metrics file, in file order. Blank lines are skipped. A final
    /// line without its newline that does not parse is taken to be a write still in progress (or cut
    /// off by a crash) and is skipped; any other line that does not parse is an error.
    /// </summary>
    /// <param name="path">The file to read; it may be open for writing by a sink at the same time.</param>
    /// <exception cref="InvalidDataException">A complete line is not a valid event; the message names the file and line.</exception>
    public static IReadOnlyList<MetricEvent> ReadAll(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string text;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        using (var reader = new StreamReader(stream, Encoding.UTF8))
            text = reader.ReadToEnd();

        var events = new List<MetricEvent>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (string.IsNullOrWhiteSpace(line))
                continue;
            bool unterminated = i == lines.Length - 1;
            try
            {
                MetricEvent e = JsonSerializer.Deserialize(line, MetricJsonContext.Default.MetricEvent)
                    ?? throw new JsonException("the line is JSON null, not an event");
                events.Add(e);
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException)
            {
                if (unterminated)
                    break;
                throw new InvalidDataException($"{path}:{i + 1}: not a metric event: {ex.Message}", ex);
            }
        }
        return events;
    }

    private static void TruncateIncompleteLastLine(FileStream stream)
    {
        long length = stream.Length;
        if (length == 0)
            return;
        // Scan backwards in blocks for the last newline; everything after it is a torn record.
        var block = new byte[4096];
        long end = length;
        while (end > 0)
        {
            int count = (int)Math.Min(block.Length, end);
            long start = end - count;
            stream.Seek(start, SeekOrigin.Begin);
            stream.ReadExactly(block, 0, count);
            int last = Array.LastIndexOf(block, (byte)'\n', count - 1, count);
            if (last >= 0)
            {
                long keep = start + last + 1;
                if (keep != length)
                    stream.SetLength(keep);
                return;
            }
            end = start;
        }
        // No newline at all: the whole file is one torn record.
        stream.SetLength(0);
    }
}
