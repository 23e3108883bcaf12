using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Loom.Data;
using Loom.Data.Caching;
using Loom.Data.Tasks;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary>
/// <c>loom data cache</c>: runs a task's pipeline once and stores its token features (seqio's
/// <c>cache_tasks_main</c>), or with <c>--verify</c> checks a stored cache without rebuilding it.
/// </summary>
public sealed class DataCacheCommand : Command<DataCacheCommand.Settings>
{
    /// <summary>Options of <c>loom data cache</c>.</summary>
    public sealed class Settings : TaskFolderSettings
    {
        /// <summary>Task name or file.</summary>
        [CommandArgument(0, "<TASK>")]
        [Description("A registered task or mixture (see loom data list; a mixture caches each of its tasks) or a task file (.json).")]
        public string Task { get; init; } = "";

        /// <summary>Splits to cache or check.</summary>
        [CommandOption("--split <SPLIT>")]
        [Description("Split to cache or check (repeatable; default: all of the task's splits).")]
        public string[] Splits { get; init; } = [];

        /// <summary>Vocabulary spec.</summary>
        [CommandOption("--vocabulary <SPEC>")]
        [Description("Vocabulary: byte (default), tiktoken:NAME, hf:PATH (tokenizer.json) or a .model file, optionally +extra_ids=N.")]
        public string Vocabulary { get; init; } = "byte";

        /// <summary>Shards per split.</summary>
        [CommandOption("--shards <N>")]
        [Description("Shard files per split (default 4); example i goes to shard i mod N.")]
        public int Shards { get; init; } = 4;

        /// <summary>Seed of the pipeline.</summary>
        [CommandOption("--seed <N>")]
        [Description("Seed for random preprocessors (default 0). With --verify: also refuse a cache built with another seed.")]
        public ulong? Seed { get; init; }

        /// <summary>Cache root.</summary>
        [CommandOption("--cache-dir <DIR>")]
        [Description("Cache root holding TASK/SPLIT folders (default $XDG_CACHE_HOME/loom/tasks or ~/.cache/loom/tasks).")]
        public string? CacheDir { get; init; }

        /// <summary>Replace an existing cache.</summary>
        [CommandOption("--force")]
        [Description("Rebuild splits that are already cached (otherwise they are refused).")]
        public bool Force { get; init; }

        /// <summary>Check instead of building.</summary>
        [CommandOption("--verify")]
        [Description("Check the existing cache instead of building: task and vocabulary fingerprints, sizes, every file's SHA-256 and index. Prints OK, STALE or MISSING per split; exit code 1 unless all are OK.")]
        public bool Verify { get; init; }

        /// <inheritdoc />
        public override Spectre.Console.ValidationResult Validate() =>
            Shards is < 1 or > TaskCacheBuildOptions.MaxShards ? Spectre.Console.ValidationResult.Error($"--shards must be between 1 and {TaskCacheBuildOptions.MaxShards}")
            : Verify && Force ? Spectre.Console.ValidationResult.Error("--verify checks a cache without rebuilding it; drop --force (or --verify to rebuild)")
            : base.Validate();
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var vocabulary = Vocabularies.Create(settings.Vocabulary);
        var progress = new LineProgress();
        var registry = settings.Registry(vocabulary, progress);
        // A mixture caches each of its tasks.
        IReadOnlyList<DataTask> tasks = registry.HasMixture(settings.Task)
            ? [.. registry.TasksOf(settings.Task).Select(registry.GetTask)]
            : [TaskRegistry.Find(registry, settings.Task, vocabulary)];
        string root = TaskCache.ResolveRoot(settings.CacheDir);
        int worst = 0;
        foreach (var task in tasks)
        {
            IReadOnlyList<string> splits = settings.Splits.Length > 0 ? settings.Splits.Distinct().ToArray() : task.Source.Splits;
            foreach (var split in splits)
                if (!task.Source.Splits.Contains(split))
                    throw new ArgumentException($"task '{task.Name}' has no split '{split}' (it has: {string.Join(", ", task.Source.Splits)})");
            int rc = settings.Verify
                ? VerifyCache(task, root, splits, settings.Seed)
                : BuildCache(task, vocabulary, root, splits, settings, progress, cancellationToken);
            if (rc == 130) return rc;
            worst = Math.Max(worst, rc);
        }
        return worst;
    }

    private static int BuildCache(DataTask task, IVocabulary vocabulary, string root, IReadOnlyList<string> splits, Settings settings,
        IProgress<string> progress, CancellationToken cancellationToken)
    {
        var options = new TaskCacheBuildOptions { Root = root, Splits = splits, Shards = settings.Shards, Seed = settings.Seed ?? 0, Force = settings.Force };
        Console.WriteLine($"caching task {task.Name} ({string.Join(", ", splits)}) with vocabulary {vocabulary.Name}, {options.Shards} shards per split, seed {options.Seed}");

        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (interrupt.IsCancellationRequested) return; // a second Ctrl-C kills the process; readers ignore its hidden temporary folder
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var clock = Stopwatch.StartNew();
        IReadOnlyList<CachedSplitInfo> built;
        try
        {
            built = TaskCache.Build(task, options, progress, interrupt.Token);
        }
        catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
        {
            Console.Error.WriteLine("loom: interrupted; no cache was written");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        foreach (var (directory, manifest) in built)
        {
            string tokens = string.Join(", ", manifest.Features.Select(f => $"{f.Name} {f.Tokens:N0}"));
            Console.WriteLine($"{manifest.Split}: {manifest.Examples:N0} examples; tokens: {tokens}; {manifest.ShardCount} shards, {Size(manifest.Bytes)} in {directory}");
            Console.WriteLine($"  shard sizes (tokens + index): {string.Join(", ", manifest.Shards.Select(s => Size(s.TokensBytes + s.IndexBytes)))}");
        }
        Console.WriteLine($"cache: {Path.Combine(root, task.Name)}");
        Console.WriteLine(FormattableString.Invariant($"done in {clock.Elapsed.TotalSeconds:F1}s"));
        return 0;
    }

    private static int VerifyCache(DataTask task, string root, IReadOnlyList<string> splits, ulong? seed)
    {
        int bad = 0;
        foreach (var split in splits)
        {
            try
            {
                using var cached = CachedSplit.Open(task, split, root, seed, verify: true);
                var m = cached.Manifest;
                Console.WriteLine($"{split}: OK: {m.Examples:N0} examples, {m.Tokens:N0} tokens, {m.ShardCount} shards, {Size(m.Bytes)}, seed {m.Seed} in {cached.Directory}");
            }
            catch (StaleCacheException e)
            {
                bad++;
                Console.WriteLine($"{split}: {(e.Problem == CacheProblem.Missing ? "MISSING" : "STALE")}: {LoomApp.OneLine(e)}");
            }
        }
        return bad == 0 ? 0 : 1;
    }

    private static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };

    /// <summary>Writes each progress line to stderr as it is reported (Progress&lt;T&gt; would post it to the thread pool, out of order).</summary>
    private sealed class LineProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine(value);
    }
}
