using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Data;

/// <summary>A document of a cached corpus: a file-safe name, its split (train or validation) and its text.</summary>
internal sealed record CachedDocument(string Name, string Split, string Text)
{
    internal const string TrainSplit = "train";
    internal const string ValidationSplit = "validation";
}

/// <summary>One document's line in the manifest: its file and a checksum that proves the file complete.</summary>
internal sealed record CacheManifestEntry(string Name, string Split, string File, int Chars, string Sha256);

/// <summary>The manifest of a cached corpus folder.</summary>
internal sealed record CacheManifest(int Format, string Corpus, string Source, IReadOnlyList<CacheManifestEntry> Documents);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(CacheManifest))]
internal sealed partial class CacheManifestJson : JsonSerializerContext;

/// <summary>
/// Stores a decoded corpus as plain UTF-8 files plus <c>manifest.json</c> in one folder. A folder is
/// written under a temporary name and renamed into place, and every file is checked against its
/// SHA-256 on reading, so a reader never takes a half-written or damaged cache for a good one.
/// </summary>
internal static class CorpusCache
{
    internal const int Format = 1;
    internal const string ManifestFile = "manifest.json";
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads a cached corpus; returns null, with the reason where the folder exists, when it is absent or unusable.</summary>
    internal static IReadOnlyList<CachedDocument>? TryRead(string directory, string corpus, out string? problem)
    {
        problem = null;
        string manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            if (Directory.Exists(directory)) problem = "no manifest";
            return null;
        }
        try
        {
            var manifest = JsonSerializer.Deserialize(File.ReadAllText(manifestPath, Utf8), CacheManifestJson.Default.CacheManifest);
            if (manifest is null || manifest.Format != Format || manifest.Corpus != corpus || manifest.Documents is null)
            {
                problem = $"manifest is not format {Format} for corpus '{corpus}'";
                return null;
            }
            var documents = new List<CachedDocument>(manifest.Documents.Count);
            foreach (var entry in manifest.Documents)
            {
                string path = Path.Combine(directory, entry.File);
                if (!File.Exists(path)) { problem = $"{entry.File} is missing"; return null; }
                byte[] bytes = File.ReadAllBytes(path);
                if (Sha256(bytes) != entry.Sha256) { problem = $"{entry.File} does not match its checksum"; return null; }
                documents.Add(new CachedDocument(entry.Name, entry.Split, Utf8.GetString(bytes)));
            }
            return documents;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or DecoderFallbackException)
        {
            problem = e.Message.ReplaceLineEndings(" ");
            return null;
        }
    }

    /// <summary>Writes the corpus into <paramref name="directory"/>, replacing any previous content atomically.</summary>
    internal static void Write(string directory, string corpus, string source, IReadOnlyList<CachedDocument> documents)
    {
        string full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"cache folder '{directory}' has no parent", nameof(directory));
        string leaf = Path.GetFileName(full);
        Directory.CreateDirectory(parent);
        // The temporary folder sits beside the target, on the same file system, so the final rename is atomic.
        string temp = Path.Combine(parent, $".{leaf}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            var entries = new List<CacheManifestEntry>(documents.Count);
            foreach (var doc in documents)
            {
                if (doc.Name.Length == 0 || !doc.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                    throw new ArgumentException($"cached document name '{doc.Name}' is not a plain file name", nameof(documents));
                string file = doc.Name + ".txt";
                byte[] bytes = Utf8.GetBytes(doc.Text);
                File.WriteAllBytes(Path.Combine(temp, file), bytes);
                entries.Add(new CacheManifestEntry(doc.Name, doc.Split, file, doc.Text.Length, Sha256(bytes)));
            }
            var manifest = new CacheManifest(Format, corpus, source, entries);
            File.WriteAllText(Path.Combine(temp, ManifestFile), JsonSerializer.Serialize(manifest, CacheManifestJson.Default.CacheManifest), Utf8);

            string? old = null;
            if (Directory.Exists(full))
            {
                old = Path.Combine(parent, $".{leaf}.old-{Guid.NewGuid():N}");
                Directory.Move(full, old);
            }
            try
            {
                Directory.Move(temp, full);
            }
            catch (IOException) when (TryRead(full, corpus, out _) is not null)
            {
                // Another process cached the same corpus first; its copy is as good as ours.
            }
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
