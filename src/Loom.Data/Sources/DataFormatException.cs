namespace Loom.Data;

/// <summary>
/// Input data is malformed: a bad JSON line, an unreadable Parquet file, a missing or mistyped field.
/// The one-line message reads <c>FILE:LINE: what is wrong; how to fix it</c> (without the line where
/// none applies).
/// </summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception with no message.</summary>
    public DataFormatException() { }

    /// <summary>Creates the exception with a one-line message.</summary>
    /// <param name="message">Where the problem is, what it is and how to fix it.</param>
    public DataFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the failure that caused it.</summary>
    /// <param name="message">Where the problem is, what it is and how to fix it.</param>
    /// <param name="innerException">The underlying failure.</param>
    public DataFormatException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a place in a file.</summary>
    /// <param name="file">The file that holds the problem.</param>
    /// <param name="line">The 1-based line (JSON Lines) or row (Parquet), or null for the whole file.</param>
    /// <param name="problem">What is wrong and how to fix it, one line.</param>
    /// <param name="innerException">The underlying failure, or null.</param>
    public DataFormatException(string file, long? line, string problem, Exception? innerException = null)
        : base(line is { } l ? $"{file}:{l}: {problem}" : $"{file}: {problem}", innerException)
    {
        File = file;
        Line = line;
    }

    /// <summary>The file that holds the problem, when known.</summary>
    public string? File { get; }

    /// <summary>The 1-based line or row of the problem, when it has one.</summary>
    public long? Line { get; }
}
