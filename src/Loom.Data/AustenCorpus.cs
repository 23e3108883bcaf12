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
    public static TextCorpus Load(string? cacheRoot = null, IProgress<string>? progress = null) =>
        ToCorpus(Sources.BuiltInCorpus.Load(Name, "the Jane Austen corpus", "novels", cacheRoot, progress, Fetch));

    private static (IReadOnlyList<CachedDocument> Documents, string Source) Fetch(string work, IProgress<string>? progress)
    {
        string deb = DebianPackages.Download(PackageName, work, progress);
        progress?.Report($"decoding {Path.GetFileName(deb)}");
        var files = DebianPackages.ReadFiles(deb, [DataFolder + "Rdata.rdb", DataFolder + "Rdata.rdx"]);
        return (Decode(files[DataFolder + "Rdata.rdx"], files[DataFolder + "Rdata.rdb"]), Path.GetFileName(deb));
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
        Sources.BuiltInCorpus.Split(documents, CachedDocument.TrainSplit),
        Sources.BuiltInCorpus.Split(documents, CachedDocument.ValidationSplit));
}
