namespace Loom.Data;

/// <summary>
/// Jane Austen's six novels (public domain), from the Debian package <c>r-cran-janeaustenr</c>: one
/// document per novel, lines joined with <c>\n</c>. <i>Persuasion</i> is held out for validation; the
/// other five, in publication order, are for training (about 3.56 million characters).
/// </summary>
/// <remarks>
/// The first load downloads the package with <c>apt-get download</c> (no root needed), decodes the R
/// data in it, and caches the text under <c>{cache root}/austen</c> (see <see cref="DataCache"/>);
/// later loads read only the cache.
/// </remarks>
public static class AustenCorpus
{
    /// <summary>The corpus name, also the name of its cache folder.</summary>
    public const string Name = "austen";

    /// <summary>The Debian package that carries the text.</summary>
    public const string PackageName = "r-cran-janeaustenr";

    private const string DataFolder = "usr/lib/R/site-library/janeaustenr/data/";

    /// <summary>The novels in publication order, as (R variable name, title, split); the last is held out.</summary>
    internal static readonly IReadOnlyList<(string Variable, string Title, string Split)> Novels =
    [
        ("sensesensibility", "Sense and Sensibility", CachedDocument.TrainSplit),
        ("prideprejudice", "Pride and Prejudice", CachedDocument.TrainSplit),
        ("mansfieldpark", "Mansfield Park", CachedDocument.TrainSplit),
        ("emma", "Emma", CachedDocument.TrainSplit),
        ("northangerabbey", "Northanger Abbey", CachedDocument.TrainSplit),
        ("persuasion", "Persuasion", CachedDocument.ValidationSplit),
    ];

    /// <summary>The novels' titles in publication order, matching the order of the documents.</summary>
    public static IReadOnlyList<string> Titles { get; } = [.. Novels.Select(n => n.Title)];

    /// <summary>Loads the corpus from the cache, fetching and caching it first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for <c>$XDG_CACHE_HOME/loom</c> or <c>~/.cache/loom</c>.</param>
    /// <param name="progress">Receives one line per step (cache hit, download, decode), or null.</param>
    /// <returns>Five training novels and <i>Persuasion</i> as validation.</returns>
    /// <exception cref="CorpusUnavailableException">The package could not be fetched or decoded.</exception>
    public static TextCorpus Load(string? cacheRoot = null, IProgress<string>? progress = null)
    {
        string directory = Path.Combine(DataCache.ResolveRoot(cacheRoot), Name);
        var cached = CorpusCache.TryRead(directory, Name, out string? problem);
        if (cached is not null)
        {
            progress?.Report($"{Name}: reading cache {directory}");
            return ToCorpus(cached);
        }
        if (problem is not null) progress?.Report($"{Name}: cache {directory} is unusable ({problem}); fetching again");

        var (documents, source) = Fetch(progress);
        try
        {
            CorpusCache.Write(directory, Name, source, documents);
            progress?.Report($"{Name}: cached {documents.Count} novels ({documents.Sum(d => (long)d.Text.Length):N0} characters) in {directory}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The text is already in hand; a read-only cache only costs a fetch next time.
            progress?.Report($"{Name}: could not write the cache {directory} ({e.Message.ReplaceLineEndings(" ")}); it will be fetched again next time");
        }
        return ToCorpus(documents);
    }

    private static (IReadOnlyList<CachedDocument> Documents, string Source) Fetch(IProgress<string>? progress)
    {
        var work = Directory.CreateTempSubdirectory("loom-austen-");
        try
        {
            string deb = DebianPackages.Download(PackageName, work.FullName, progress is null ? null : new Prefixed(progress));
            progress?.Report($"{Name}: decoding {Path.GetFileName(deb)}");
            var files = DebianPackages.ReadFiles(deb, [DataFolder + "Rdata.rdb", DataFolder + "Rdata.rdx"]);
            return (Decode(files[DataFolder + "Rdata.rdx"], files[DataFolder + "Rdata.rdb"]), Path.GetFileName(deb));
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new CorpusUnavailableException(
                $"the Jane Austen corpus could not be fetched ({e.Message.ReplaceLineEndings(" ")}); pass --data FILE_OR_DIR to train on your own text instead", e);
        }
        finally
        {
            try { work.Delete(recursive: true); }
            catch (IOException) { } // a leftover temp folder is harmless and the OS cleans it
        }
    }

    /// <summary>Decodes janeaustenr's lazy-load database into the six novels, in publication order.</summary>
    internal static IReadOnlyList<CachedDocument> Decode(byte[] rdx, byte[] rdb)
    {
        var variables = RLazyLoadDatabase.ReadVariables(rdx, rdb).ToDictionary(v => v.Key, v => v.Value, StringComparer.Ordinal);
        var documents = new List<CachedDocument>(Novels.Count);
        foreach (var (variable, title, split) in Novels)
        {
            if (!variables.TryGetValue(variable, out object? value) || value is not string?[] lines)
                throw new InvalidDataException($"{PackageName} has no character vector '{variable}' ({title})");
            documents.Add(new CachedDocument(variable, split, string.Join('\n', lines.Select(l => l ?? ""))));
        }
        return documents;
    }

    private static TextCorpus ToCorpus(IReadOnlyList<CachedDocument> documents) => new(
        Name,
        [.. documents.Where(d => d.Split == CachedDocument.TrainSplit).Select(d => d.Text)],
        [.. documents.Where(d => d.Split == CachedDocument.ValidationSplit).Select(d => d.Text)]);

    /// <summary>Prefixes the corpus name to the package fetcher's progress lines.</summary>
    private sealed class Prefixed(IProgress<string> inner) : IProgress<string>
    {
        public void Report(string value) => inner.Report($"{Name}: {value}");
    }
}
