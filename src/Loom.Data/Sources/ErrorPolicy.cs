namespace Loom.Data.Sources;

/// <summary>What a source does with a malformed example (a bad line, a missing or mistyped field).</summary>
public enum ErrorPolicy
{
    /// <summary>Stop with a <see cref="DataFormatException"/> that names the file and line.</summary>
    Fail,

    /// <summary>Skip the example and count it in the source's <see cref="SourceStats"/>.</summary>
    Skip,
}

/// <summary>What one pass over a source read and skipped.</summary>
/// <param name="Examples">Examples yielded.</param>
/// <param name="Skipped">Malformed examples skipped under <see cref="ErrorPolicy.Skip"/> (for Parquet, whole unreadable files count one each).</param>
/// <param name="FirstProblem">The message of the first skipped example, naming its file and line, or null when none was skipped.</param>
public sealed record SourceStats(long Examples, long Skipped, string? FirstProblem)
{
    /// <summary>No examples read yet.</summary>
    public static SourceStats Empty { get; } = new(0, 0, null);
}
