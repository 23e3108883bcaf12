namespace Loom.Data;

/// <summary>
/// A built-in corpus could not be fetched or read. The one-line message says why and what to pass
/// instead.
/// </summary>
public sealed class CorpusUnavailableException : Exception
{
    /// <summary>Creates the exception with no message.</summary>
    public CorpusUnavailableException() { }

    /// <summary>Creates the exception with a one-line message.</summary>
    /// <param name="message">What could not be fetched, why, and what to do instead.</param>
    public CorpusUnavailableException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the failure that caused it.</summary>
    /// <param name="message">What could not be fetched, why, and what to do instead.</param>
    /// <param name="innerException">The underlying failure.</param>
    public CorpusUnavailableException(string message, Exception innerException) : base(message, innerException) { }
}
