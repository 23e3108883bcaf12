namespace Loom.Distributed;

/// <summary>
/// A communicator cannot be created: its native library (MPICH, NCCL) is missing, or the launcher and the
/// library disagree about the job. The message is one line that says what to install or change.
/// </summary>
public sealed class CommunicatorUnavailableException : Exception
{
    /// <summary>Creates the exception with a one-line message.</summary>
    public CommunicatorUnavailableException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with a one-line message and its cause.</summary>
    public CommunicatorUnavailableException(string message, Exception inner) : base(message, inner)
    {
    }

    /// <summary>Creates the exception with a generic message.</summary>
    public CommunicatorUnavailableException() : base("no communicator is available")
    {
    }
}
