using Loom.Data.Tasks;

namespace Loom.Data.Caching;

/// <summary>
/// The cached splits of a task, each checked against the current task definition when opened (see
/// <see cref="CachedSplit.Open"/>). Gives the examples either split by split or as a
/// <see cref="DataTask"/> (<see cref="AsTask"/>), so a consumer reads the cache exactly as it reads
/// the live pipeline. Dispose to unmap the files; the splits and the task it gives are unusable after.
/// </summary>
public sealed class CachedTask : IDisposable
{
    private readonly Dictionary<string, CachedSplit> splits;

    private CachedTask(DataTask task, Dictionary<string, CachedSplit> splits)
    {
        Task = task;
        this.splits = splits;
        Splits = [.. task.Source.Splits.Where(splits.ContainsKey)];
    }

    /// <summary>The current task definition the cache was checked against.</summary>
    public DataTask Task { get; }

    /// <summary>The cached splits, in the task's split order.</summary>
    public IReadOnlyList<string> Splits { get; }

    /// <summary>
    /// Opens every cached split of <paramref name="task"/> (those of its splits that have a folder in
    /// the cache), checking each as <see cref="CachedSplit.Open"/> does.
    /// </summary>
    /// <param name="task">The current task definition; the cache must have been built from it.</param>
    /// <param name="cacheRoot">The cache root, or null for the default (see <see cref="TaskCache.ResolveRoot"/>).</param>
    /// <param name="seed">When given, also refuse splits whose pipeline ran with another seed.</param>
    /// <param name="verify">Also check every file's SHA-256 and every index entry (reads the whole cache).</param>
    /// <exception cref="StaleCacheException">No split is cached, or a cached split is partial, damaged or stale.</exception>
    public static CachedTask Open(DataTask task, string? cacheRoot = null, ulong? seed = null, bool verify = false)
    {
        ArgumentNullException.ThrowIfNull(task);
        var opened = new Dictionary<string, CachedSplit>(StringComparer.Ordinal);
        try
        {
            foreach (var split in task.Source.Splits)
                if (Directory.Exists(TaskCache.SplitDirectory(cacheRoot, task.Name, split)))
                    opened.Add(split, CachedSplit.Open(task, split, cacheRoot, seed, verify));
        }
        catch
        {
            foreach (var s in opened.Values) s.Dispose();
            throw;
        }
        if (opened.Count == 0)
            throw new StaleCacheException(CacheProblem.Missing,
                $"task '{task.Name}' is not cached in {TaskCache.ResolveRoot(cacheRoot)}; build it with `loom data cache {task.Name}`");
        return new CachedTask(task, opened);
    }

    /// <summary>The cached split <paramref name="split"/>.</summary>
    /// <exception cref="StaleCacheException">That split is not cached (<see cref="CacheProblem.Missing"/>); the message lists those that are.</exception>
    public CachedSplit Split(string split) => splits.TryGetValue(split, out var s) ? s
        : throw new StaleCacheException(CacheProblem.Missing,
            $"split '{split}' of task '{Task.Name}' is not cached (cached: {string.Join(", ", Splits)}); build it with `loom data cache {Task.Name} --split {split}`");

    /// <summary>The cached examples of <paramref name="split"/> in the pipeline's order: no text features, the token features.</summary>
    /// <exception cref="StaleCacheException">That split is not cached.</exception>
    public IEnumerable<Example> GetDataset(string split) => Split(split);

    /// <summary>
    /// A task that reads this cache: same name, output features, metrics and description as
    /// <see cref="Task"/>, no preprocessors, and a source whose splits are the cached ones. Its
    /// <see cref="DataTask.GetDataset"/> ignores the seed: the pipeline ran with the seed the cache
    /// was built with (<see cref="TaskCacheManifest.Seed"/>).
    /// </summary>
    public DataTask AsTask() => new(Task.Name, new CachedSource(this), [], Task.OutputFeatures, Task.Metrics, Task.Description);

    /// <summary>Unmaps every split's files.</summary>
    public void Dispose()
    {
        foreach (var s in splits.Values) s.Dispose();
    }

    /// <summary>The cache as a data source: its examples are already preprocessed and tokenized.</summary>
    private sealed class CachedSource(CachedTask cache) : IDataSource
    {
        public IReadOnlyList<string> Splits => cache.Splits;

        public string Fingerprint => $"cache:{cache.Task.Fingerprint}";

        public IEnumerable<Example> Read(string split) => cache.Split(split);
    }
}
