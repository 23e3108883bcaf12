using System.Text.Json.Nodes;
using Loom.Data.Caching;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Caching;

public sealed class TaskCacheTests : IDisposable
{
    private readonly TempDirectory temp = new();

    private string Root => temp.Path;

    public void Dispose() => temp.Dispose();

    /// <summary>Question/answer pairs per split; the fingerprint changes with the data.</summary>
    private sealed class QaSource(Dictionary<string, (string Q, string A)[]> data, Action<int>? onRead = null) : IDataSource
    {
        public IReadOnlyList<string> Splits => [.. data.Keys];

        public string Fingerprint => string.Join(";", data.Select(s => s.Key + "=" + string.Join(",", s.Value.Select(p => p.Q + "/" + p.A))));

        public IEnumerable<Example> Read(string split)
        {
            int i = 0;
            foreach (var (q, a) in data[split])
            {
                onRead?.Invoke(i++);
                yield return Example.FromTexts(("question", q), ("answer", a));
            }
        }
    }

    /// <summary>Drops the "inputs" tokens of every third example, so some examples lack a feature.</summary>
    private sealed class DropEveryThirdInput : IPreprocessor
    {
        public string Fingerprint => "drop_every_third_input";

        public IEnumerable<Example> Apply(IEnumerable<Example> examples, PreprocessorContext context) => examples.Select((e, i) => i % 3 != 2 ? e
            : e with { Tokens = e.Tokens.Where(t => t.Key != "inputs").ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal) });
    }

    private static Dictionary<string, (string Q, string A)[]> Data(int train = 11, int validation = 4, string salt = "") => new()
    {
        ["train"] = [.. Enumerable.Range(0, train).Select(i => ($"question {i}{salt}?", i == 4 ? "" : $"answer é{new string('x', i)}"))],
        ["validation"] = [.. Enumerable.Range(0, validation).Select(i => ($"held out {i}", $"yes {i}"))],
    };

    private static DataTask QaTask(IDataSource source, IVocabulary? vocabulary = null, bool dropSomeInputs = false)
    {
        vocabulary ??= new ByteVocabulary();
        List<IPreprocessor> steps = [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["inputs"] = "question", ["targets"] = "answer" }), ExamplePreprocessors.Tokenize];
        if (dropSomeInputs) steps.Add(new DropEveryThirdInput());
        return new DataTask("qa", source, steps,
            new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary, AddEos: false), ["targets"] = new(vocabulary) });
    }

    private IReadOnlyList<CachedSplitInfo> Build(DataTask task, int shards = 3, bool force = false, IReadOnlyList<string>? splits = null, CancellationToken token = default) =>
        TaskCache.Build(task, new TaskCacheBuildOptions { Root = Root, Shards = shards, Force = force, Splits = splits, ProgressInterval = 2 }, null, token);

    private static void AssertSameExamples(IEnumerable<Example> expected, IEnumerable<Example> actual)
    {
        var e = expected.ToList();
        var a = actual.ToList();
        Assert.Equal(e.Count, a.Count);
        for (int i = 0; i < e.Count; i++)
        {
            Assert.Empty(a[i].Texts);
            Assert.Equal(e[i].Tokens.Keys.Order(), a[i].Tokens.Keys.Order());
            foreach (var (name, ids) in e[i].Tokens) Assert.Equal(ids, a[i].Tokens[name]);
        }
    }

    private StaleCacheException Refused(DataTask task, string split = "train", ulong? seed = null, bool verify = false) =>
        Assert.Throws<StaleCacheException>(() => CachedSplit.Open(task, split, Root, seed, verify).Dispose());

    [Fact]
    public void RoundTripGivesThePipelinesTokensInOrderAcrossShards()
    {
        var task = QaTask(new QaSource(Data()));
        var lines = new List<string>();
        var built = TaskCache.Build(task, new TaskCacheBuildOptions { Root = Root, Shards = 3, Seed = 7, ProgressInterval = 5 }, new SyncProgress(lines.Add));

        Assert.Equal(["train", "validation"], built.Select(b => b.Manifest.Split));
        var train = built[0].Manifest;
        Assert.Equal(Path.Combine(Root, "qa", "train"), built[0].Directory);
        Assert.Equal((11L, 3, 7UL, TaskCache.FormatVersion), (train.Examples, train.ShardCount, train.Seed, train.Format));
        Assert.Equal([4L, 4, 3], train.Shards.Select(s => s.Examples));
        Assert.Equal(["inputs", "targets"], train.Features.Select(f => f.Name));
        Assert.Equal(task.Fingerprint, train.TaskFingerprint);
        Assert.Equal(VocabularyFingerprint.Of(new ByteVocabulary()), train.Features[0].VocabularyFingerprint);
        var expected = task.GetDataset("train", 7).ToList();
        Assert.Equal(expected.Sum(e => e.Tokens["inputs"].Length), train.Features[0].Tokens);
        Assert.Equal(expected.Sum(e => e.Tokens["targets"].Length), train.Features[1].Tokens);
        foreach (var s in train.Shards)
        {
            Assert.Equal(s.TokensBytes, new FileInfo(Path.Combine(built[0].Directory, s.TokensFile)).Length);
            Assert.Equal(s.Examples * 2 * 16, s.IndexBytes);
        }
        Assert.Equal("shard-00002-of-00003.tokens", train.Shards[2].TokensFile);
        Assert.Equal($"qa/train: 10 examples, {expected.Take(10).Sum(e => e.Tokens.Values.Sum(t => t.Length)):N0} tokens", lines[1]);
        Assert.Contains(lines, l => l.StartsWith("qa/validation: 4 examples", StringComparison.Ordinal) && l.EndsWith("in 3 shards", StringComparison.Ordinal));

        using var cached = CachedTask.Open(task, Root, seed: 7, verify: true);
        Assert.Equal(["train", "validation"], cached.Splits);
        var split = cached.Split("train");
        Assert.Equal(11, split.Count);
        AssertSameExamples(expected, split);
        AssertSameExamples(task.GetDataset("validation"), cached.GetDataset("validation"));
        Assert.Equal([ByteVocabulary.Eos], split.ReadTokens(4, "targets")); // empty answer: EOS only
        // Random access in any order gives the same arrays.
        foreach (int i in new[] { 10, 0, 5, 3, 9 }) Assert.Equal(expected[i].Tokens["inputs"], split.ReadTokens(i, "inputs"));
        Assert.Throws<ArgumentOutOfRangeException>(() => split.ReadTokens(11, "inputs"));
        Assert.Contains("inputs, targets", Assert.Throws<KeyNotFoundException>(() => split.ReadTokens(0, "text")).Message);
    }

    [Fact]
    public void ExamplesThatLackAFeatureKeepLackingIt()
    {
        var task = QaTask(new QaSource(Data()), dropSomeInputs: true);
        Build(task, shards: 2);
        using var split = CachedSplit.Open(task, "train", Root, verify: true);
        AssertSameExamples(task.GetDataset("train"), split);
        Assert.False(split.TryReadTokens(2, "inputs", out _));
        Assert.Throws<KeyNotFoundException>(() => split.ReadTokens(2, "inputs"));
        Assert.True(split.TryReadTokens(3, "inputs", out var ids));
        Assert.Equal(task.GetDataset("train").ElementAt(3).Tokens["inputs"], ids);
    }

    [Fact]
    public void EmptySplitsAndMoreShardsThanExamplesRoundTrip()
    {
        var task = QaTask(new QaSource(Data(train: 2, validation: 0)));
        Build(task, shards: 5);
        using var cached = CachedTask.Open(task, Root, verify: true);
        Assert.Empty(cached.Split("validation"));
        AssertSameExamples(task.GetDataset("train"), cached.Split("train"));
    }

    [Fact]
    public void AsTaskReadsTheCacheLikeTheLivePipeline()
    {
        var task = QaTask(new QaSource(Data()));
        Build(task, splits: ["train"]);
        using var cached = CachedTask.Open(task, Root);
        var fromCache = cached.AsTask();
        Assert.Equal(["train"], fromCache.Source.Splits);
        Assert.Empty(fromCache.Preprocessors);
        Assert.StartsWith("cache:", fromCache.Source.Fingerprint, StringComparison.Ordinal);
        AssertSameExamples(task.GetDataset("train"), fromCache.GetDataset("train"));
        var missing = Assert.Throws<StaleCacheException>(() => cached.Split("validation"));
        Assert.Equal(CacheProblem.Missing, missing.Problem);
        Assert.Contains("--split validation", missing.Message);
    }

    [Fact]
    public void ChangedSourceDataIsRefused()
    {
        Build(QaTask(new QaSource(Data())));
        var changed = Refused(QaTask(new QaSource(Data(salt: "!"))));
        Assert.Equal(CacheProblem.TaskChanged, changed.Problem);
        Assert.Contains("built from a different task definition/source; rebuild with `loom data cache qa --force`", changed.Message);
        Assert.Single(changed.Message.Split('\n'));
    }

    [Fact]
    public void ChangedVocabularyIsRefusedWithBothNames()
    {
        Build(QaTask(new QaSource(Data())));
        var extra = new ExtraIdsVocabulary(new ByteVocabulary(), 100);
        var changed = Refused(QaTask(new QaSource(Data()), extra));
        Assert.Equal(CacheProblem.VocabularyChanged, changed.Problem);
        Assert.Contains($"built with vocabulary {new ByteVocabulary().Name} (", changed.Message);
        Assert.Contains($"the run uses {extra.Name} (", changed.Message);
        Assert.Equal(CacheProblem.VocabularyChanged, Refused(QaTask(new QaSource(Data()), Vocabularies.Create("byte+extra_ids=3"))).Problem);
    }

    [Fact]
    public void OtherSeedAndMissingSplitsAreRefused()
    {
        var task = QaTask(new QaSource(Data()));
        Assert.Equal(CacheProblem.Missing, Assert.Throws<StaleCacheException>(() => CachedTask.Open(task, Root)).Problem);
        Assert.Equal(CacheProblem.Missing, Refused(task).Problem);
        Build(task, splits: ["train"]);
        Assert.Equal(CacheProblem.SeedDiffers, Refused(task, seed: 3).Problem);
        Assert.Equal(CacheProblem.Missing, Refused(task, "validation").Problem);
    }

    [Fact]
    public void PartialCachesAreRefused()
    {
        var task = QaTask(new QaSource(Data()));
        string split = Build(task)[0].Directory;
        string shard = Path.Combine(split, "shard-00001-of-00003.tokens");
        byte[] original = File.ReadAllBytes(shard);

        File.WriteAllBytes(shard, original[..^4]);
        var truncated = Refused(task);
        Assert.Equal(CacheProblem.Damaged, truncated.Problem);
        Assert.Contains("shard-00001-of-00003.tokens has", truncated.Message);

        File.Delete(shard);
        Assert.Equal(CacheProblem.Incomplete, Refused(task).Problem);

        File.WriteAllBytes(shard, original);
        CachedSplit.Open(task, "train", Root).Dispose();
        File.Delete(Path.Combine(split, TaskCache.ManifestFile));
        var noManifest = Refused(task);
        Assert.Equal(CacheProblem.Incomplete, noManifest.Problem);
        Assert.Contains("did not finish", noManifest.Message);
        Assert.Equal(CacheProblem.Incomplete, Assert.Throws<StaleCacheException>(() => CachedTask.Open(task, Root)).Problem);
    }

    [Fact]
    public void OtherFormatVersionsAndBrokenManifestsAreRefused()
    {
        var task = QaTask(new QaSource(Data()));
        string manifest = Path.Combine(Build(task)[0].Directory, TaskCache.ManifestFile);
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["format"] = TaskCache.FormatVersion + 1;
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.Equal(CacheProblem.FormatVersion, Refused(task).Problem);

        json["format"] = TaskCache.FormatVersion;
        json["shards"]![0]!["examples"] = 3;
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.Contains("inconsistent", Refused(task).Message);

        File.WriteAllText(manifest, "{ not json");
        Assert.Equal(CacheProblem.Damaged, Refused(task).Problem);
    }

    [Fact]
    public void VerifyFindsChangedBytesThatTheCheapChecksMiss()
    {
        var task = QaTask(new QaSource(Data()));
        string split = Build(task)[0].Directory;
        string shard = Path.Combine(split, "shard-00000-of-00003.tokens");
        byte[] bytes = File.ReadAllBytes(shard);
        bytes[0] ^= 1;
        File.WriteAllBytes(shard, bytes);
        CachedSplit.Open(task, "train", Root).Dispose();
        var damaged = Refused(task, verify: true);
        Assert.Equal(CacheProblem.Damaged, damaged.Problem);
        Assert.Contains("SHA-256", damaged.Message);
    }

    [Fact]
    public void AnIndexEntryOutOfRangeIsReportedAsDamage()
    {
        var task = QaTask(new QaSource(Data()));
        string index = Path.Combine(Build(task)[0].Directory, "shard-00000-of-00003.index");
        byte[] bytes = File.ReadAllBytes(index);
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), 1L << 40);
        File.WriteAllBytes(index, bytes);
        using var split = CachedSplit.Open(task, "train", Root);
        Assert.Equal(CacheProblem.Damaged, Assert.Throws<StaleCacheException>(() => split.ReadTokens(0, "inputs")).Problem);
        Assert.Equal(CacheProblem.Damaged, Refused(task, verify: true).Problem);
    }

    [Fact]
    public void AnExistingCacheIsReplacedOnlyWithForce()
    {
        Build(QaTask(new QaSource(Data())));
        var newer = QaTask(new QaSource(Data(salt: "?")));
        var refused = Assert.Throws<IOException>(() => Build(newer));
        Assert.Contains("--force", refused.Message);
        Assert.Contains("train, validation", refused.Message);
        CachedSplit.Open(QaTask(new QaSource(Data())), "train", Root).Dispose(); // the old cache is intact

        Build(newer, force: true);
        using var split = CachedSplit.Open(newer, "train", Root, verify: true);
        AssertSameExamples(newer.GetDataset("train"), split);
        Assert.Equal(["train", "validation"], Directory.GetFileSystemEntries(Path.Combine(Root, "qa")).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void ACancelledBuildLeavesNoCacheAndNoTemporaryFolder()
    {
        using var cancel = new CancellationTokenSource();
        // Cancelled while the second split is read: the finished first split must not be kept either.
        Assert.ThrowsAny<OperationCanceledException>(() => Build(QaTask(new ValidationCancels(Data(), cancel)), token: cancel.Token));
        Assert.Empty(Directory.GetFileSystemEntries(Root));
    }

    [Fact]
    public void ACancelledRebuildKeepsTheOldCacheAndLeavesNoTemporaryFolder()
    {
        var data = Data();
        Build(QaTask(new QaSource(data)), splits: ["train"]);
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Build(QaTask(new ValidationCancels(data, cancel)), force: true, token: cancel.Token));
        Assert.Equal(["train"], Directory.GetFileSystemEntries(Path.Combine(Root, "qa")).Select(Path.GetFileName));
        CachedSplit.Open(QaTask(new QaSource(data)), "train", Root, verify: true).Dispose();
    }

    [Fact]
    public void AFailingPipelineLeavesNoCache()
    {
        var task = QaTask(new QaSource(Data(), i => { if (i == 5) throw new InvalidDataException("bad record 5"); }));
        Assert.Equal("bad record 5", Assert.Throws<InvalidDataException>(() => Build(task)).Message);
        Assert.Empty(Directory.GetFileSystemEntries(Root));
    }

    [Fact]
    public void LeftoverTemporaryFoldersAreIgnored()
    {
        var task = QaTask(new QaSource(Data()));
        Build(task, splits: ["train"]);
        temp.Write("qa/.validation.tmp-0123/shard-00000-of-00003.tokens", "junk");
        using var cached = CachedTask.Open(task, Root);
        Assert.Equal(["train"], cached.Splits);
    }

    [Fact]
    public void UntokenizedTasksAndUnknownSplitsAreRefused()
    {
        var untokenized = new DataTask("raw", new QaSource(Data()), [],
            new Dictionary<string, OutputFeature> { ["targets"] = new(new ByteVocabulary()) });
        Assert.Contains("tokenize", Assert.Throws<InvalidDataException>(() => Build(untokenized)).Message);
        Assert.Empty(Directory.GetFileSystemEntries(Root));
        Assert.Contains("it has: train, validation", Assert.Throws<ArgumentException>(() => Build(QaTask(new QaSource(Data())), splits: ["test"])).Message);
        Assert.Throws<ArgumentException>(() => new TaskCacheBuildOptions { Shards = 0 });
    }

    [Fact]
    public void AnExplicitRootIsUsedAsIs()
    {
        Assert.Equal(Path.GetFullPath(Root), TaskCache.ResolveRoot(Root));
        Assert.Equal(Path.Combine(Path.GetFullPath(Root), "qa", "train"), TaskCache.SplitDirectory(Root, "qa", "train"));
        Assert.EndsWith(Path.Combine("loom", "tasks"), TaskCache.ResolveRoot(null), StringComparison.Ordinal);
    }

    /// <summary>A source that cancels when the validation split's third example is read.</summary>
    private sealed class ValidationCancels(Dictionary<string, (string Q, string A)[]> data, CancellationTokenSource cancel) : IDataSource
    {
        private readonly QaSource inner = new(data);

        public IReadOnlyList<string> Splits => inner.Splits;

        public string Fingerprint => inner.Fingerprint;

        public IEnumerable<Example> Read(string split) => inner.Read(split).Select((e, i) =>
        {
            if (split == "validation" && i == 2) cancel.Cancel();
            return e;
        });
    }

    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
