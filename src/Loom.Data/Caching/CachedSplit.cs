using System.Buffers.Binary;
using System.Collections;
using System.Collections.ObjectModel;
using System.Diagnostics.CodeAnalysis;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text.Json;
using Loom.Data.Tasks;

namespace Loom.Data.Caching;

/// <summary>
/// One cached split of a task, its shard files memory-mapped read-only: random access to each
/// example's token features by index, and enumeration in the pipeline's order. Opening checks the
/// cache against the current task (format, task fingerprint, vocabularies, file sizes) and refuses a
/// stale or partial one with <see cref="StaleCacheException"/>. Reads are thread-safe; dispose to unmap.
/// </summary>
public sealed class CachedSplit : IReadOnlyList<Example>, IDisposable
{
    private readonly MappedShard[] shards;
    private readonly Dictionary<string, int> featureIndex;
    private readonly string rebuild;
    private bool disposed;

    private CachedSplit(string directory, TaskCacheManifest manifest, MappedShard[] shards)
    {
        Directory = directory;
        Manifest = manifest;
        this.shards = shards;
        Features = [.. manifest.Features.Select(f => f.Name)];
        featureIndex = Features.Select((f, i) => (f, i)).ToDictionary(p => p.f, p => p.i, StringComparer.Ordinal);
        Count = (int)manifest.Examples;
        rebuild = RebuildHint(manifest.Task);
    }

    /// <summary>The split's folder, <c>ROOT/TASK/SPLIT</c>.</summary>
    public string Directory { get; }

    /// <summary>The manifest the cache was checked against.</summary>
    public TaskCacheManifest Manifest { get; }

    /// <summary>The cached token features, sorted by name (ordinal).</summary>
    public IReadOnlyList<string> Features { get; }

    /// <summary>Number of examples.</summary>
    public int Count { get; }

    /// <summary>Example <paramref name="index"/>: no text features, the token features it has.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not in [0, <see cref="Count"/>).</exception>
    /// <exception cref="StaleCacheException">The example's index entries are out of range (a damaged cache).</exception>
    public Example this[int index]
    {
        get
        {
            var tokens = new Dictionary<string, int[]>(Features.Count, StringComparer.Ordinal);
            foreach (var feature in Features)
                if (TryReadTokens(index, feature, out var ids)) tokens.Add(feature, ids);
            return new Example(ReadOnlyDictionary<string, string>.Empty, tokens);
        }
    }

    /// <summary>The tokens of feature <paramref name="feature"/> of example <paramref name="index"/>, read from the mapped shard.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not in [0, <see cref="Count"/>).</exception>
    /// <exception cref="KeyNotFoundException">The feature is not cached, or this example lacks it.</exception>
    /// <exception cref="StaleCacheException">The example's index entry is out of range (a damaged cache).</exception>
    public int[] ReadTokens(int index, string feature) => TryReadTokens(index, feature, out var ids) ? ids
        : throw new KeyNotFoundException($"example {index} of the cached split '{Manifest.Split}' of task '{Manifest.Task}' has no token feature '{feature}'");

    /// <summary>Reads the tokens of feature <paramref name="feature"/> of example <paramref name="index"/>; false when that example lacks the feature.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not in [0, <see cref="Count"/>).</exception>
    /// <exception cref="KeyNotFoundException">The feature is not cached; the message lists those that are.</exception>
    /// <exception cref="StaleCacheException">The example's index entry is out of range (a damaged cache).</exception>
    public bool TryReadTokens(int index, string feature, [NotNullWhen(true)] out int[]? tokens)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        ArgumentNullException.ThrowIfNull(feature);
        if (!featureIndex.TryGetValue(feature, out int f))
            throw new KeyNotFoundException($"the cached split '{Manifest.Split}' of task '{Manifest.Task}' has no feature '{feature}' (it has: {string.Join(", ", Features)})");
        // Round-robin: example i is entry i / N of shard i mod N.
        var shard = shards[index % shards.Length];
        long entry = ((long)(index / shards.Length) * Features.Count + f) * ShardWriter.IndexEntryBytes;
        long offset = ReadInt64(shard.Index!, entry), length = ReadInt64(shard.Index!, entry + 8);
        if (length == -1)
        {
            tokens = null;
            return false;
        }
        if (offset < 0 || length < 0 || length > Array.MaxLength || offset > shard.Info.Tokens - length)
            throw new StaleCacheException(CacheProblem.Damaged,
                $"cache {Directory}: the index entry of example {index} feature '{feature}' points outside {shard.Info.TokensFile} (offset {offset}, length {length}); {rebuild}");
        tokens = new int[length];
        if (length > 0)
        {
            shard.Tokens!.ReadArray(offset * sizeof(int), tokens, 0, (int)length);
            if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(tokens, tokens);
        }
        return true;
    }

    /// <summary>The examples in the pipeline's order.</summary>
    public IEnumerator<Example> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Unmaps the shard files.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var s in shards) s.Dispose();
    }

    /// <summary>
    /// Opens the cached split <paramref name="split"/> of <paramref name="task"/> after checking that it
    /// is complete and was built from this task definition, source data and vocabularies.
    /// </summary>
    /// <param name="task">The current task definition; the cache must have been built from it.</param>
    /// <param name="split">The split.</param>
    /// <param name="cacheRoot">The cache root, or null for the default (see <see cref="TaskCache.ResolveRoot"/>).</param>
    /// <param name="seed">When given, also refuse a cache whose pipeline ran with another seed.</param>
    /// <param name="verify">Also check every file's SHA-256 and every index entry (reads the whole cache).</param>
    /// <exception cref="StaleCacheException">The split is not cached, or its cache is partial, damaged or stale; the one-line message says how to rebuild it.</exception>
    public static CachedSplit Open(DataTask task, string split, string? cacheRoot = null, ulong? seed = null, bool verify = false)
    {
        ArgumentNullException.ThrowIfNull(task);
        string directory = TaskCache.SplitDirectory(cacheRoot, task.Name, split);
        if (!System.IO.Directory.Exists(directory))
            throw new StaleCacheException(CacheProblem.Missing,
                $"split '{split}' of task '{task.Name}' is not cached in {TaskCache.ResolveRoot(cacheRoot)}; build it with `loom data cache {task.Name} --split {split}`");
        var manifest = ReadManifest(directory, task.Name);
        CheckAgainstTask(manifest, directory, task, split, seed);
        CheckFiles(manifest, directory);

        var shards = new MappedShard[manifest.ShardCount];
        try
        {
            for (int s = 0; s < shards.Length; s++) shards[s] = new MappedShard(directory, manifest.Shards[s]);
            var opened = new CachedSplit(directory, manifest, shards);
            if (verify) opened.Verify();
            return opened;
        }
        catch
        {
            foreach (var s in shards) s?.Dispose();
            throw;
        }
    }

    private static string RebuildHint(string task) => $"rebuild with `loom data cache {task} --force`";

    private static TaskCacheManifest ReadManifest(string directory, string task)
    {
        string path = Path.Combine(directory, TaskCache.ManifestFile);
        if (!File.Exists(path))
            throw new StaleCacheException(CacheProblem.Incomplete,
                $"cache {directory} has no {TaskCache.ManifestFile}: its build did not finish; {RebuildHint(task)}");
        TaskCacheManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize(File.ReadAllBytes(path), TaskCacheManifestJson.Default.TaskCacheManifest);
        }
        catch (JsonException e)
        {
            throw new StaleCacheException($"cache {directory}: {TaskCache.ManifestFile} is unreadable ({e.Message.ReplaceLineEndings(" ")}); {RebuildHint(task)}", e);
        }
        if (manifest is not null && manifest.Format != TaskCache.FormatVersion)
            throw new StaleCacheException(CacheProblem.FormatVersion,
                $"cache {directory} has format {manifest.Format}, this Loom reads format {TaskCache.FormatVersion}; {RebuildHint(task)}");
        if (manifest?.Task is null || manifest.Split is null || manifest.TaskFingerprint is null || manifest.Features is null || manifest.Shards is null
            || manifest.Features.Any(f => f?.Name is null || f.Vocabulary is null || f.VocabularyFingerprint is null)
            || manifest.Shards.Any(s => s?.TokensFile is null || s.IndexFile is null || s.TokensSha256 is null || s.IndexSha256 is null))
            throw new StaleCacheException($"cache {directory}: {TaskCache.ManifestFile} lacks required fields; {RebuildHint(task)}");
        return manifest;
    }

    private static void CheckAgainstTask(TaskCacheManifest manifest, string directory, DataTask task, string split, ulong? seed)
    {
        string rebuild = RebuildHint(task.Name);
        if (manifest.Task != task.Name || manifest.Split != split)
            throw new StaleCacheException(CacheProblem.TaskChanged,
                $"cache {directory} holds split '{manifest.Split}' of task '{manifest.Task}', not split '{split}' of task '{task.Name}'; {rebuild}");
        string[] features = [.. task.OutputFeatures.Keys.Order(StringComparer.Ordinal)];
        if (!features.SequenceEqual(manifest.Features.Select(f => f.Name)))
            throw new StaleCacheException(CacheProblem.TaskChanged,
                $"cache {directory} was built with features {string.Join(", ", manifest.Features.Select(f => f.Name))}, the task now has {string.Join(", ", features)}; {rebuild}");
        foreach (var cached in manifest.Features)
        {
            var vocabulary = task.OutputFeatures[cached.Name].Vocabulary;
            string fingerprint = VocabularyFingerprint.Of(vocabulary);
            if (fingerprint != cached.VocabularyFingerprint)
                throw new StaleCacheException(CacheProblem.VocabularyChanged,
                    $"cache {directory} was built with vocabulary {cached.Vocabulary} ({cached.VocabularyFingerprint}) for '{cached.Name}', the run uses {vocabulary.Name} ({fingerprint}); " +
                    $"rebuild with `loom data cache {task.Name} --vocabulary SPEC --force`");
        }
        if (manifest.TaskFingerprint != task.Fingerprint)
            throw new StaleCacheException(CacheProblem.TaskChanged,
                $"cache {directory} was built from a different task definition/source; {rebuild}");
        if (seed is ulong wanted && manifest.Seed != wanted)
            throw new StaleCacheException(CacheProblem.SeedDiffers,
                $"cache {directory} was built with seed {manifest.Seed}, the run uses seed {wanted}; rebuild with `loom data cache {task.Name} --seed {wanted} --force`");
    }

    /// <summary>The cheap checks: the manifest is consistent with itself and every file exists with the size it records.</summary>
    private static void CheckFiles(TaskCacheManifest manifest, string directory)
    {
        string rebuild = RebuildHint(manifest.Task);
        StaleCacheException Damaged(string what) => new(CacheProblem.Damaged, $"cache {directory}: {what}; {rebuild}");

        int n = manifest.ShardCount;
        if (n < 1 || manifest.Shards.Count != n)
            throw Damaged($"the manifest lists {manifest.Shards.Count} shards but says there are {n}");
        if (manifest.Examples < 0 || manifest.Examples > int.MaxValue)
            throw Damaged($"the manifest's example count {manifest.Examples} is out of range");
        if (manifest.Shards.Sum(s => s.Tokens) != manifest.Tokens)
            throw Damaged("the shards' token counts do not add up to the features' token counts");
        for (int s = 0; s < n; s++)
        {
            var shard = manifest.Shards[s];
            if (shard.TokensFile != TaskCache.ShardFileName(s, n, TaskCache.TokensExtension) || shard.IndexFile != TaskCache.ShardFileName(s, n, TaskCache.IndexExtension))
                throw Damaged($"shard {s} has unexpected file names {shard.TokensFile}, {shard.IndexFile}");
            long expectedExamples = (manifest.Examples - s + n - 1) / n;
            if (shard.Examples != expectedExamples
                || shard.IndexBytes != shard.Examples * manifest.Features.Count * ShardWriter.IndexEntryBytes
                || shard.Tokens < 0 || shard.TokensBytes != shard.Tokens * sizeof(int))
                throw Damaged($"the index of shard {s} is inconsistent with the manifest ({shard.Examples} examples, {shard.Tokens} tokens)");
            foreach (var (file, bytes) in new[] { (shard.TokensFile, shard.TokensBytes), (shard.IndexFile, shard.IndexBytes) })
            {
                var info = new FileInfo(Path.Combine(directory, file));
                if (!info.Exists)
                    throw new StaleCacheException(CacheProblem.Incomplete, $"cache {directory}: shard file {file} is missing; {rebuild}");
                if (info.Length != bytes)
                    throw Damaged($"{file} has {info.Length} bytes, the manifest says {bytes} (truncated or overwritten)");
            }
        }
    }

    /// <summary>The thorough checks: every file's SHA-256, and every index entry in place and adding up to the manifest's token counts.</summary>
    private void Verify()
    {
        StaleCacheException Damaged(string what) => new(CacheProblem.Damaged, $"cache {Directory}: {what}; {rebuild}");
        var featureTokens = new long[Features.Count];
        foreach (var shard in shards)
        {
            foreach (var (file, sha) in new[] { (shard.Info.TokensFile, shard.Info.TokensSha256), (shard.Info.IndexFile, shard.Info.IndexSha256) })
            {
                using var stream = File.OpenRead(Path.Combine(Directory, file));
                if (Convert.ToHexStringLower(SHA256.HashData(stream)) != sha) throw Damaged($"{file} does not match its SHA-256 checksum");
            }
            long next = 0, entry = 0;
            for (long e = 0; e < shard.Info.Examples; e++)
            {
                for (int f = 0; f < Features.Count; f++, entry += ShardWriter.IndexEntryBytes)
                {
                    long offset = ReadInt64(shard.Index!, entry), length = ReadInt64(shard.Index!, entry + 8);
                    if (offset != next || length < -1)
                        throw Damaged($"{shard.Info.IndexFile} entry {e} feature '{Features[f]}' is out of place (offset {offset}, length {length}, expected offset {next})");
                    if (length > 0) { next += length; featureTokens[f] += length; }
                }
            }
            if (next != shard.Info.Tokens) throw Damaged($"{shard.Info.IndexFile} covers {next} tokens, {shard.Info.TokensFile} holds {shard.Info.Tokens}");
        }
        for (int f = 0; f < Features.Count; f++)
            if (featureTokens[f] != Manifest.Features[f].Tokens)
                throw Damaged($"the index holds {featureTokens[f]} tokens of '{Features[f]}', the manifest says {Manifest.Features[f].Tokens}");
    }

    private static long ReadInt64(MemoryMappedViewAccessor view, long position)
    {
        long value = view.ReadInt64(position);
        return BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);
    }

    /// <summary>A shard's two files, mapped read-only; an empty file is not mapped (it cannot be).</summary>
    private sealed class MappedShard : IDisposable
    {
        private readonly MemoryMappedFile? tokensMap, indexMap;

        public MappedShard(string directory, CachedShard info)
        {
            Info = info;
            try
            {
                (tokensMap, Tokens) = Map(Path.Combine(directory, info.TokensFile), info.TokensBytes);
                (indexMap, Index) = Map(Path.Combine(directory, info.IndexFile), info.IndexBytes);
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public CachedShard Info { get; }
        public MemoryMappedViewAccessor? Tokens { get; }
        public MemoryMappedViewAccessor? Index { get; }

        private static (MemoryMappedFile?, MemoryMappedViewAccessor?) Map(string path, long bytes)
        {
            if (bytes == 0) return (null, null);
            var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
            try
            {
                return (map, map.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.Read));
            }
            catch
            {
                map.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            Tokens?.Dispose();
            Index?.Dispose();
            tokensMap?.Dispose();
            indexMap?.Dispose();
        }
    }
}
