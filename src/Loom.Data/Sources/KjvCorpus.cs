using System.Text.RegularExpressions;

namespace Loom.Data.Sources;

/// <summary>
/// The King James Bible (public domain), from the Debian packages <c>bible-kjv-text</c> (the
/// compressed text) and <c>bible-kjv</c> (the <c>bible</c> program that decodes it): one document per
/// book, one verse per line as <c>chapter:verse text</c>. The last three books of each testament are
/// held out: Haggai, Zechariah and Malachi for test, 3 John, Jude and Revelation for validation; the
/// other 60 books are for training.
/// </summary>
/// <remarks>
/// The first load downloads both packages with <c>apt-get download</c> (no root needed), runs the
/// packaged <c>bible</c> program from a temporary folder to dump every verse, and caches the books
/// under <c>{cache root}/kjv</c>; later loads read only the cache.
/// </remarks>
public static partial class KjvCorpus
{
    /// <summary>The corpus name, also the name of its cache folder.</summary>
    public const string Name = "kjv";

    /// <summary>The Debian package that carries the compressed text.</summary>
    public const string TextPackageName = "bible-kjv-text";

    /// <summary>The Debian package whose <c>bible</c> program decodes the text.</summary>
    public const string ProgramPackageName = "bible-kjv";

    /// <summary>The books in canonical order, as the <c>bible</c> program abbreviates them.</summary>
    public static IReadOnlyList<string> Books { get; } =
    [
        "Ge", "Exo", "Lev", "Num", "Deu", "Josh", "Jdgs", "Ruth", "1Sm", "2Sm", "1Ki", "2Ki", "1Chr", "2Chr", "Ezra", "Neh", "Est",
        "Job", "Psa", "Prv", "Eccl", "SSol", "Isa", "Jer", "Lam", "Eze", "Dan", "Hos", "Joel", "Amos", "Obad", "Jonah", "Mic",
        "Nahum", "Hab", "Zep", "Hag", "Zec", "Mal", "Mat", "Mark", "Luke", "John", "Acts", "Rom", "1Cor", "2Cor", "Gal", "Eph",
        "Phi", "Col", "1Th", "2Th", "1Tim", "2Tim", "Titus", "Phmn", "Heb", "Jas", "1Pet", "2Pet", "1Jn", "2Jn", "3Jn", "Jude", "Rev",
    ];

    private static readonly HashSet<string> TestBooks = new(["Hag", "Zec", "Mal"], StringComparer.Ordinal);
    private static readonly HashSet<string> ValidationBooks = new(["3Jn", "Jude", "Rev"], StringComparer.Ordinal);

    /// <summary>Loads the training and validation books, fetching and caching the corpus first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for <c>$XDG_CACHE_HOME/loom</c> or <c>~/.cache/loom</c>.</param>
    /// <param name="progress">Receives one line per step (cache hit, download, decode), or null.</param>
    /// <returns>60 training books and 3 validation books (3 John, Jude, Revelation).</returns>
    /// <exception cref="CorpusUnavailableException">The packages could not be fetched or decoded.</exception>
    public static TextCorpus Load(string? cacheRoot = null, IProgress<string>? progress = null)
    {
        var documents = LoadDocuments(cacheRoot, progress);
        return new TextCorpus(Name, BuiltInCorpus.Split(documents, CachedDocument.TrainSplit), BuiltInCorpus.Split(documents, CachedDocument.ValidationSplit));
    }

    /// <summary>Loads the test books (Haggai, Zechariah, Malachi), fetching and caching the corpus first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for the per-user default.</param>
    /// <param name="progress">Receives one line per step, or null.</param>
    /// <returns>The three test books in canonical order.</returns>
    /// <exception cref="CorpusUnavailableException">The packages could not be fetched or decoded.</exception>
    public static IReadOnlyList<string> LoadTest(string? cacheRoot = null, IProgress<string>? progress = null) =>
        BuiltInCorpus.Split(LoadDocuments(cacheRoot, progress), BuiltInCorpus.TestSplit);

    private static IReadOnlyList<CachedDocument> LoadDocuments(string? cacheRoot, IProgress<string>? progress) =>
        BuiltInCorpus.Load(Name, "the King James Bible", "books", cacheRoot, progress, Fetch);

    private static (IReadOnlyList<CachedDocument>, string) Fetch(string work, IProgress<string>? progress)
    {
        if (OperatingSystem.IsWindows())
            throw new NotSupportedException("the Debian bible program that decodes the text runs only on Linux");
        string textDeb = DebianPackages.Download(TextPackageName, work, progress);
        string programDeb = DebianPackages.Download(ProgramPackageName, work, progress);
        progress?.Report($"decoding {Path.GetFileName(textDeb)} with the bible program from {Path.GetFileName(programDeb)}");
        var data = DebianPackages.ReadFiles(textDeb, ["usr/lib/bible.data", "usr/lib/bible.data.conc"]);
        var program = DebianPackages.ReadFiles(programDeb, ["usr/bin/bible"]);
        string dataDir = Directory.CreateDirectory(Path.Combine(work, "data")).FullName;
        File.WriteAllBytes(Path.Combine(dataDir, "bible.data"), data["usr/lib/bible.data"]);
        // Without the concordance beside it the program prints a notice into the text.
        File.WriteAllBytes(Path.Combine(dataDir, "bible.data.conc"), data["usr/lib/bible.data.conc"]);
        string bible = Path.Combine(work, "bible");
        File.WriteAllBytes(bible, program["usr/bin/bible"]);
        File.SetUnixFileMode(bible, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        // -f turns pretty-printing off: one verse per line, each prefixed with its reference.
        var result = ProcessRunner.Run(bible, ["-f", "-p", dataDir, "Gen1:1-Rev22:21"], work);
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"the bible program failed: {ProcessRunner.LastLine(result.StandardError, $"exit code {result.ExitCode}")}");
        return (Parse(result.StandardOutput), $"{Path.GetFileName(textDeb)} + {Path.GetFileName(programDeb)}");
    }

    /// <summary>Groups the program's verse lines (<c>Ge1:1 In the beginning...</c>) into the 66 books.</summary>
    internal static IReadOnlyList<CachedDocument> Parse(string dump)
    {
        var verses = Books.ToDictionary(b => b, _ => new List<string>(), StringComparer.Ordinal);
        int lineNumber = 0;
        foreach (string line in dump.Split('\n'))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            var match = VerseLine().Match(line);
            if (!match.Success || !verses.TryGetValue(match.Groups[1].Value, out var book))
                throw new InvalidDataException($"bible output line {lineNumber} is not a verse of a known book: '{(line.Length > 60 ? line[..60] : line)}'");
            book.Add(match.Groups[2].Value + " " + match.Groups[3].Value);
        }
        var documents = new List<CachedDocument>(Books.Count);
        for (int i = 0; i < Books.Count; i++)
        {
            string book = Books[i];
            if (verses[book].Count == 0) throw new InvalidDataException($"bible output has no verses of {book}");
            string split = TestBooks.Contains(book) ? BuiltInCorpus.TestSplit : ValidationBooks.Contains(book) ? CachedDocument.ValidationSplit : CachedDocument.TrainSplit;
            documents.Add(new CachedDocument($"{i + 1:D2}-{book}", split, string.Join('\n', verses[book])));
        }
        return documents;
    }

    [GeneratedRegex(@"^([1-3]?[A-Za-z]+)(\d+:\d+) (.*?)\r?$")]
    private static partial Regex VerseLine();
}
