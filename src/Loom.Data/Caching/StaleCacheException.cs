namespace Loom.Data.Caching;

/// <summary>Why a task cache was refused.</summary>
public enum CacheProblem
{
    /// <summary>Nothing is cached for the task or split: build it first.</summary>
    Missing,

    /// <summary>The folder exists but has no manifest or lacks a shard file: a build did not finish.</summary>
    Incomplete,

    /// <summary>The cache was written in another file format version.</summary>
    FormatVersion,

    /// <summary>The cache was built from a different task definition or source data.</summary>
    TaskChanged,

    /// <summary>The cache was built with a different vocabulary than the run uses.</summary>
    VocabularyChanged,

    /// <summary>The cache was built with another seed than the one asked for.</summary>
    SeedDiffers,

    /// <summary>A file's size, checksum or index entries disagree with the manifest.</summary>
    Damaged,
}

/// <summary>
/// A task cache that cannot be used: missing, partly written, damaged, or built from a task, source or
/// vocabulary other than the current one. The message is one line that says how to rebuild it.
/// </summary>
public sealed class StaleCacheException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="problem">Why the cache was refused.</param>
    /// <param name="message">One line: what is wrong and how to fix it.</param>
    public StaleCacheException(CacheProblem problem, string message) : base(message) => Problem = problem;

    /// <summary>Creates the exception (for serializers and tests); <see cref="Problem"/> is <see cref="CacheProblem.Damaged"/>.</summary>
    public StaleCacheException() : this(CacheProblem.Damaged, "the task cache cannot be used") { }

    /// <summary>Creates the exception; <see cref="Problem"/> is <see cref="CacheProblem.Damaged"/>.</summary>
    public StaleCacheException(string message) : this(CacheProblem.Damaged, message) { }

    /// <summary>Creates the exception wrapping the error that made the cache unreadable; <see cref="Problem"/> is <see cref="CacheProblem.Damaged"/>.</summary>
    public StaleCacheException(string message, Exception innerException) : base(message, innerException) => Problem = CacheProblem.Damaged;

    /// <summary>Why the cache was refused: callers may build a <see cref="CacheProblem.Missing"/> cache, and must rebuild any other.</summary>
    public CacheProblem Problem { get; }
}
