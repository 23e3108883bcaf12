namespace Loom.Data.Sources;

/// <summary>
/// The cache-or-fetch steps every built-in corpus shares: read <c>{cache root}/{name}</c> when it is
/// whole, otherwise fetch and decode in a temporary folder, cache the result, and turn fetch failures
/// into one-line <see cref="CorpusUnavailableException"/>s.
/// </summary>
internal static class BuiltInCorpus
{
    internal const string TestSplit = "test";

    /// <summary>Returns the cached documents, fetching them with <paramref name="fetch"/> first if needed.</summary>
    /// <param name="name">The corpus name, also its cache folder and the prefix of progress lines.</param>
    /// <param name="description">What the corpus is, for the failure message, e.g. "the King James Bible".</param>
    /// <param name="cacheRoot">The cache root, or null for the per-user default.</param>
    /// <param name="progress">Receives one line per step, or null.</param>
    /// <param name="unit">The plural noun for documents in progress lines, e.g. "books".</param>
    /// <param name="fetch">Fetches and decodes into the given temporary folder; returns the documents and a source label for the manifest.</param>
    internal static IReadOnlyList<CachedDocument> Load(
        string name, string description, string unit, string? cacheRoot, IProgress<string>? progress,
        Func<string, IProgress<string>?, (IReadOnlyList<CachedDocument> Documents, string Source)> fetch)
    {
        string directory = Path.Combine(DataCache.ResolveRoot(cacheRoot), name);
        var cached = CorpusCache.TryRead(directory, name, out string? problem);
        if (cached is not null)
        {
            progress?.Report($"{name}: reading cache {directory}");
            return cached;
        }
        if (problem is not null) progress?.Report($"{name}: cache {directory} is unusable ({problem}); fetching again");

        var prefixed = progress is null ? null : new Prefixed(name, progress);
        var work = Directory.CreateTempSubdirectory($"loom-{name}-");
        IReadOnlyList<CachedDocument> documents;
        string source;
        try
        {
            (documents, source) = fetch(work.FullName, prefixed);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new CorpusUnavailableException(
                $"{description} could not be fetched ({e.Message.ReplaceLineEndings(" ")}); pass --data FILE_OR_DIR to train on your own text instead", e);
        }
        finally
        {
            try { work.Delete(recursive: true); }
            catch (IOException) { } // a leftover temp folder is harmless and the OS cleans it
        }

        try
        {
            CorpusCache.Write(directory, name, source, documents);
            progress?.Report($"{name}: cached {documents.Count} {unit} ({documents.Sum(d => (long)d.Text.Length):N0} characters) in {directory}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The data is already in hand; a read-only cache only costs a fetch next time.
            progress?.Report($"{name}: could not write the cache {directory} ({e.Message.ReplaceLineEndings(" ")}); it will be fetched again next time");
        }
        return documents;
    }

    /// <summary>The texts of the documents in one split, in order.</summary>
    internal static IReadOnlyList<string> Split(IReadOnlyList<CachedDocument> documents, string split) =>
        [.. documents.Where(d => d.Split == split).Select(d => d.Text)];

    /// <summary>Prefixes the corpus name to a fetcher's progress lines.</summary>
    private sealed class Prefixed(string name, IProgress<string> inner) : IProgress<string>
    {
        public void Report(string value) => inner.Report($"{name}: {value}");
    }
}
