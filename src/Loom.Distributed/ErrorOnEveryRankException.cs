namespace Loom.Distributed;

/// <summary>
/// Bad input that every rank found together, from the result of the same collective: each rank stops with it on its
/// own, so the job needs no abort (MPI_Abort can end the job before mpirun has forwarded the ranks' messages).
/// </summary>
public sealed class ErrorOnEveryRankException : ArgumentException
{
    /// <summary>An error every rank raises with the same <paramref name="message"/>.</summary>
    public ErrorOnEveryRankException(string message) : base(message)
    {
    }

    /// <summary>An error every rank raises.</summary>
    public ErrorOnEveryRankException()
    {
    }

    /// <summary>An error every rank raises, caused by <paramref name="innerException"/>.</summary>
    public ErrorOnEveryRankException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
