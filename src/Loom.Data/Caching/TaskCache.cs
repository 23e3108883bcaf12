using System.Globalization;
using System.Text.Json;
using Loom.Data.Tasks;

namespace Loom.Data.Caching;

/// <summary>
/// The offline cache of preprocessed tasks (seqio's <c>cache_tasks_main</c>): runs a task's pipeline
/// once and stores each split's token features in sharded binary files that
/// <see cref="CachedSplit"/> memory-maps. Layout: <c>ROOT/TASK/SPLIT/manifest.json</c> plus
/// <c>shard-SSSSS-of-NNNNN.tokens</c> and <c>.index</c> files (see <see cref="CachedShard"/>).
/// Example i of a split goes to shard i mod N (round-robin): the pipeline is read in one pass without
/// knowing its length in advance, shards differ by at most one example, and reading the shards in
/// turn gives back the pipeline's order.
/// </summary>
/// <remarks>
/// A split is built in a hidden folder beside its target (<c>ROOT/TASK/.SPLIT.tmp-RANDOM</c>) with
/// the manifest written last and every file flushed to the disk, and all requested splits are renamed
/// into place only once every one of them is complete. A failed or cancelled build deletes its
/// hidden folders; one left behind by a killed process is never read (readers open only
/// <c>ROOT/TASK/SPLIT</c>).
/// </remarks>
public static class TaskCache
{
    /// <summary>The file format version written; a reader refuses any other.</summary>
    public const int FormatVersion = 1;

    /// <summary>The manifest's file name in a split folder.</summary>
    public const string ManifestFile = "manifest.json";

    internal const string TokensExtension = ".tokens";
    internal const string IndexExtension = ".index";

    /// <summary>
    /// The cache root: <paramref name="cacheRoot"/> when given, else the <c>tasks</c> folder of
    /// <see cref="DataCache.ResolveRoot"/>'s per-user root (<c>$XDG_CACHE_HOME/loom/tasks</c> or <c>~/.cache/loom/tasks</c>).
    /// </summary>
    /// <param name="cacheRoot">An explicit root, or null for the per-user default.</param>
    /// <returns>The full path of the root; it need not exist yet.</returns>
    public static string ResolveRoot(string? cacheRoot) =>
        string.IsNullOrWhiteSpace(cacheRoot) ? Path.Combine(DataCache.ResolveRoot(null), "tasks") : Path.GetFullPath(cacheRoot);

    /// <summary>The folder of a cached split: <c>ROOT/TASK/SPLIT</c>.</summary>
    /// <param name="cacheRoot">The cache root, or null for the default (see <see cref="ResolveRoot"/>).</param>
    /// <param name="task">The task's name.</param>
    /// <param name="split">The split.</param>
    /// <exception cref="ArgumentException">The split's name cannot be a folder name.</exception>
    public static string SplitDirectory(string? cacheRoot, string task, string split) =>
        Path.Combine(ResolveRoot(cacheRoot), TaskRegistry.CheckName(task), CheckSplitName(split));

    /// <summary>
    /// Runs the requested splits of <paramref name="task"/> through its pipeline
    /// (<see cref="DataTask.GetDataset"/> with <see cref="TaskCacheBuildOptions.Seed"/>) and writes
    /// their token features (those of the task's output features each example has) as a cache.
    /// </summary>
    /// <param name="task">The task.</param>
    /// <param name="options">Root, splits, shards, seed, force; defaults when null.</param>
    /// <param name="progress">Receives a line every <see cref="TaskCacheBuildOptions.ProgressInterval"/> examples and one per finished split.</param>
    /// <param name="cancellationToken">Stops the build between examples; nothing is left behind.</param>
    /// <returns>Each split's folder and manifest, in the order requested.</returns>
    /// <exception cref="ArgumentException">A split is not one of the task's.</exception>
    /// <exception cref="IOException">A split is already cached and <see cref="TaskCacheBuildOptions.Force"/> is off, or the disk failed.</exception>
    /// <exception cref="InvalidDataException">The pipeline produced no token features, too many examples, or the task changed while it was read.</exception>
    /// <exception cref="OperationCanceledException">The build was cancelled; no cache and no temporary folder remain.</exception>
    public static IReadOnlyList<CachedSplitInfo> Build(DataTask task, TaskCacheBuildOptions? options = null,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(task);
        options ??= new TaskCacheBuildOptions();
        string root = ResolveRoot(options.Root);
        var splits = (options.Splits ?? task.Source.Splits).Distinct(StringComparer.Ordinal).ToArray();
        if (splits.Length == 0) throw new ArgumentException($"task '{task.Name}': no splits to cache (it has: {string.Join(", ", task.Source.Splits)})");
        foreach (var split in splits)
        {
            if (!task.Source.Splits.Contains(split))
                throw new ArgumentException($"task '{task.Name}' has no split '{split}' (it has: {string.Join(", ", task.Source.Splits)})");
            CheckSplitName(split);
        }
        string taskDirectory = Path.Combine(root, task.Name);
        if (!options.Force)
        {
            var cached = splits.Where(s => Directory.Exists(Path.Combine(taskDirectory, s))).ToArray();
            if (cached.Length > 0) throw AlreadyCached(task.Name, cached, taskDirectory);
        }

        bool createdTaskDirectory = !Directory.Exists(taskDirectory);
        Directory.CreateDirectory(taskDirectory);
        var staged = new List<(string Split, string Temp, TaskCacheManifest? Manifest)>();
        try
        {
            // Read before and after: a source that changes during the build would record a fingerprint its data does not match.
            string fingerprint = task.Fingerprint;
            for (int i = 0; i < splits.Length; i++)
            {
                string temp = Path.Combine(taskDirectory, $".{splits[i]}.tmp-{Guid.NewGuid():N}");
                staged.Add((splits[i], temp, null));
                Directory.CreateDirectory(temp);
                staged[i] = (splits[i], temp, WriteSplit(task, splits[i], temp, fingerprint, options, progress, cancellationToken));
            }
            if (task.Fingerprint != fingerprint)
                throw new InvalidDataException($"task '{task.Name}' changed while it was being cached (its source data or definition); build it again");
            cancellationToken.ThrowIfCancellationRequested();
            return [.. staged.Select(s => Commit(taskDirectory, s.Split, s.Temp, s.Manifest!, options.Force))];
        }
        finally
        {
            foreach (var (_, temp, _) in staged)
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            if (createdTaskDirectory && Directory.Exists(taskDirectory) && !Directory.EnumerateFileSystemEntries(taskDirectory).Any())
                Directory.Delete(taskDirectory);
        }
    }

    private static TaskCacheManifest WriteSplit(DataTask task, string split, string directory, string fingerprint,
        TaskCacheBuildOptions options, IProgress<string>? progress, CancellationToken cancellationToken)
    {
        string[] features = [.. task.OutputFeatures.Keys.Order(StringComparer.Ordinal)];
        var featureTokens = new long[features.Length];
        var writers = new ShardWriter[options.Shards];
        try
        {
            for (int s = 0; s < writers.Length; s++) writers[s] = new ShardWriter(directory, s, writers.Length);
            long examples = 0;
            bool sawTokens = false;
            foreach (var example in task.GetDataset(split, options.Seed))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (examples == int.MaxValue)
                    throw new InvalidDataException($"task '{task.Name}' split '{split}' has more than {int.MaxValue:N0} examples, more than a cached split can hold");
                sawTokens = sawTokens || features.Any(example.Tokens.ContainsKey);
                writers[examples % writers.Length].Write(example, features, featureTokens);
                examples++;
                if (examples % options.ProgressInterval == 0)
                    progress?.Report($"{task.Name}/{split}: {examples:N0} examples, {featureTokens.Sum():N0} tokens");
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (examples > 0 && !sawTokens)
                throw new InvalidDataException(
                    $"task '{task.Name}' split '{split}': no example has a token feature ({string.Join(", ", features)}); the task's pipeline must tokenize them (ExamplePreprocessors.Tokenize)");
            var shards = writers.Select(w => w.Finish()).ToArray();
            var manifest = new TaskCacheManifest(FormatVersion, task.Name, split, fingerprint, options.Seed, examples,
                [.. features.Select((f, i) => new CachedFeature(f, task.OutputFeatures[f].Vocabulary.Name,
                    VocabularyFingerprint.Of(task.OutputFeatures[f].Vocabulary), featureTokens[i]))],
                writers.Length, shards);
            // The manifest is the last file written: a folder without it is an unfinished build.
            using (var stream = new FileStream(Path.Combine(directory, ManifestFile), FileMode.CreateNew, FileAccess.Write))
            {
                JsonSerializer.Serialize(stream, manifest, TaskCacheManifestJson.Default.TaskCacheManifest);
                stream.Flush(flushToDisk: true);
            }
            progress?.Report($"{task.Name}/{split}: {examples:N0} examples, {manifest.Tokens:N0} tokens in {writers.Length} shards");
            return manifest;
        }
        finally
        {
            foreach (var w in writers) w?.Dispose();
        }
    }

    /// <summary>Renames a finished split folder into place, replacing an old one only when forced.</summary>
    private static CachedSplitInfo Commit(string taskDirectory, string split, string temp, TaskCacheManifest manifest, bool force)
    {
        string target = Path.Combine(taskDirectory, split);
        string? old = null;
        if (Directory.Exists(target))
        {
            // Another build finished first while this one ran.
            if (!force) throw AlreadyCached(manifest.Task, [split], taskDirectory);
            old = Path.Combine(taskDirectory, $".{split}.old-{Guid.NewGuid():N}");
            Directory.Move(target, old);
        }
        try
        {
            Directory.Move(temp, target);
        }
        catch (IOException)
        {
            if (old is not null && !Directory.Exists(target)) Directory.Move(old, target);
            throw;
        }
        if (old is not null) Directory.Delete(old, recursive: true);
        return new CachedSplitInfo(target, manifest);
    }

    private static IOException AlreadyCached(string task, IReadOnlyList<string> splits, string taskDirectory) => new(
        $"task '{task}' already has a cache of {(splits.Count == 1 ? "split" : "splits")} {string.Join(", ", splits)} in {taskDirectory}; " +
        $"rebuild with `loom data cache {task} --force` or check it with `loom data cache {task} --verify`");

    /// <summary>The file name of a shard's tokens or index file, e.g. <c>shard-00000-of-00004.tokens</c>.</summary>
    internal static string ShardFileName(int shard, int shardCount, string extension) =>
        string.Create(CultureInfo.InvariantCulture, $"shard-{shard:D5}-of-{shardCount:D5}{extension}");

    private static string CheckSplitName(string split)
    {
        ArgumentNullException.ThrowIfNull(split);
        if (split.Length == 0 || split[0] == '.' || split.IndexOfAny(['/', '\\', '\0']) >= 0 || split.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new ArgumentException($"split name '{split}' cannot be a cache folder name: use letters, digits, '-' or '_'");
        return split;
    }
}
