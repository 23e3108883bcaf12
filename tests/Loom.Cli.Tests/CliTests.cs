namespace Loom.Cli.Tests;

public sealed class CliTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-cli-");

    private string dir => temp.Path;

    public void Dispose() => temp.Dispose();

    private static void AssertOneLineError(CliRunner.Result r, string expected)
    {
        Assert.NotEqual(0, r.ExitCode);
        string err = r.Stderr.Trim();
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr + r.Stdout); // no stack trace
        Assert.StartsWith("loom: error:", err);
    }

    private string WriteText()
    {
        string file = Path.Combine(dir, "text.txt");
        var words = "it is a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife".Split(' ');
        File.WriteAllText(file, string.Join(' ', Enumerable.Range(0, 3000).Select(i => words[(i * 7 + i / 5) % words.Length])));
        return file;
    }

    private static readonly string[] SmallModel =
    {
        "--set", "model.model_dim=32", "--set", "model.num_layers=1", "--set", "model.mlp_dim=64", "--set", "model.head_dim=16",
        "--set", "model.num_heads=2", "--set", "data.sequence_length=32", "--set", "training.batch_size=4",
        "--set", "training.log_every=2", "--set", "training.eval_batches=2", "--device", "cpu",
    };

    [Fact]
    public void UnknownConfigKeyIsAOneLineError() =>
        AssertOneLineError(CliRunner.Run(dir, "train", "--set", "model.num_layerz=2"), "model.num_layerz");

    [Fact]
    public void BadConfigValueIsAOneLineError() =>
        AssertOneLineError(CliRunner.Run(dir, "train", "--set", "training.optimizer=sgd"), "training.optimizer");

    [Fact]
    public void MissingDataFileIsAOneLineError() =>
        AssertOneLineError(CliRunner.Run(dir, "train", "--data", Path.Combine(dir, "missing.txt"), "--device", "cpu"), "missing.txt");

    [Fact]
    public void CorruptCheckpointIsAOneLineError()
    {
        string text = WriteText();
        string run = Path.Combine(dir, "run");
        var train = CliRunner.Run(dir, new[] { "train", "--data", text, "--run-dir", run, "--set", "training.steps=2" }.Concat(SmallModel).ToArray());
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        string weights = Directory.GetFiles(Path.Combine(run, "checkpoints"), "model.safetensors", SearchOption.AllDirectories).Single();
        File.WriteAllBytes(weights, new byte[] { 1, 2, 3 });
        AssertOneLineError(CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is"), "model.safetensors");
        AssertOneLineError(CliRunner.Run(dir, "eval", "--checkpoint", run), "model.safetensors");
        AssertOneLineError(CliRunner.Run(dir, "generate", "--checkpoint", dir), "no checkpoint");
    }

    [Fact]
    public void TrainResumeEvalAndGenerateWorkEndToEnd()
    {
        string text = WriteText();
        string run = Path.Combine(dir, "run");
        var first = CliRunner.Run(dir, new[] { "train", "--data", text, "--run-dir", run, "--set", "training.steps=4" }.Concat(SmallModel).ToArray());
        Assert.True(first.ExitCode == 0, first.Stderr + first.Stdout);
        Assert.Contains("held-out loss", first.Stdout);
        foreach (var file in new[] { "config.json", "metrics.jsonl", "loss.png" }) Assert.True(File.Exists(Path.Combine(run, file)), file);

        // A fresh train into a run folder with checkpoints is refused rather than overwriting it.
        AssertOneLineError(CliRunner.Run(dir, new[] { "train", "--data", text, "--run-dir", run }.Concat(SmallModel).ToArray()), "--resume");

        var resumed = CliRunner.Run(dir, "train", "--resume", "--run-dir", run, "--set", "training.steps=6");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr + resumed.Stdout);
        Assert.Contains("resumed from", resumed.Stdout);
        Assert.True(Directory.Exists(Path.Combine(run, "checkpoints", "step_00000006")));

        var eval = CliRunner.Run(dir, "eval", "--checkpoint", run, "--device", "cpu");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        Assert.Contains("bits/byte", eval.Stdout);

        var generate = CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is a", "-n", "20", "--seed", "3", "--device", "cpu");
        Assert.True(generate.ExitCode == 0, generate.Stderr);
        Assert.StartsWith("it is a", generate.Stdout);
        var again = CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is a", "-n", "20", "--seed", "3", "--device", "cpu");
        Assert.Equal(generate.Stdout, again.Stdout); // seeded sampling is reproducible

        // Structured output: the barely trained model's continuation is JSON that fits the schema, and ends within -n.
        string schema = Path.Combine(dir, "schema.json");
        File.WriteAllText(schema, """{"type":"object","properties":{"a":{"type":"integer"},"b":{"enum":["x","y"]},"c":{"type":"string"}},"required":["a","b","c"],"additionalProperties":false}""");
        var json = CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is a", "-n", "40", "--seed", "3", "--device", "cpu", "--json-schema", schema);
        Assert.True(json.ExitCode == 0, json.Stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(json.Stdout["it is a".Length..].Trim()))
        {
            Assert.Equal(["a", "b", "c"], doc.RootElement.EnumerateObject().Select(p => p.Name));
            Assert.True(doc.RootElement.GetProperty("a").TryGetInt64(out _));
            Assert.Contains(doc.RootElement.GetProperty("b").GetString(), (string[])["x", "y"]);
        }
        File.WriteAllText(schema, """{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}""");
        AssertOneLineError(CliRunner.Run(dir, "generate", "--checkpoint", run, "--device", "cpu", "--json-schema", schema), "$.properties.age.minimum: 'minimum' is not supported");

        var quantizedEval = CliRunner.Run(dir, "eval", "--checkpoint", run, "--device", "cpu", "--quantize", "int8");
        Assert.True(quantizedEval.ExitCode == 0, quantizedEval.Stderr);
        Assert.Contains("bits/byte", quantizedEval.Stdout);
        Assert.Matches(@"quantized 7 linear weights to int8: .* \(3\.\dx smaller\); model ", quantizedEval.Stderr);
        var quantizedGenerate = CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is a", "-n", "5", "--device", "cpu", "--quantize", "int8");
        Assert.True(quantizedGenerate.ExitCode == 0, quantizedGenerate.Stderr);
        Assert.StartsWith("it is a", quantizedGenerate.Stdout);
        Assert.Contains("to int8", quantizedGenerate.Stderr);
    }

    [Fact]
    public void UnknownQuantizationIsAOneLineError() =>
        AssertOneLineError(CliRunner.Run(dir, "eval", "--checkpoint", dir, "--quantize", "int4"), "--quantize takes int8 or none");

    [Fact]
    public void SentencePieceRunCarriesItsVocabularyIntoTheCheckpoint()
    {
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "Loom.slnx"))) repo = Path.GetDirectoryName(repo)!;
        string spm = Path.Combine(repo, "tests", "Loom.Data.Tests", "Fixtures", "unigram.model");
        string run = Path.Combine(dir, "spm-run");
        var train = CliRunner.Run(dir, new[] { "train", "--data", WriteText(), "--run-dir", run, "--set", "training.steps=2", "--set", $"data.vocabulary={spm}" }.Concat(SmallModel).ToArray());
        AssertOneLineError(train, "model.vocab_size=800"); // the error says how to fix it
        train = CliRunner.Run(dir, new[] { "train", "--data", WriteText(), "--run-dir", run, "--set", "training.steps=2", "--set", $"data.vocabulary={spm}", "--set", "model.vocab_size=800" }.Concat(SmallModel).ToArray());
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.True(File.Exists(Path.Combine(run, "checkpoints", "step_00000002", "unigram.model")));
        var generate = CliRunner.Run(dir, "generate", "--checkpoint", run, "--prompt", "it is a", "-n", "5", "--seed", "1", "--device", "cpu");
        Assert.True(generate.ExitCode == 0, generate.Stderr);
        Assert.StartsWith("it is a", generate.Stdout);
    }

    [Fact]
    public void VocabTrainWritesALosslessModel()
    {
        string text = Path.Combine(dir, "vocab.txt");
        var rng = new Random(1);
        File.WriteAllLines(text, Enumerable.Range(0, 3000).Select(i => $"Line {i}: {string.Join(' ', Enumerable.Range(0, 8).Select(_ => new string((char)('a' + rng.Next(26)), rng.Next(1, 5))))}  é"));
        string model = Path.Combine(dir, "v.model");
        var r = CliRunner.Run(dir, "vocab", "train", "--input", text, "--output", model, "--vocab-size", "300");
        bool spmInstalled = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "spm_train")));
        if (!spmInstalled)
        {
            AssertOneLineError(r, "apt-get install sentencepiece");
            return;
        }
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("decode back exactly", r.Stdout);
        Assert.True(File.Exists(model));
        AssertOneLineError(CliRunner.Run(dir, "vocab", "train", "--input", Path.Combine(dir, "none.txt"), "--output", model), "none.txt");
    }

    [Theory]
    [InlineData("train")]
    [InlineData("eval")]
    [InlineData("infer")]
    [InlineData("generate")]
    [InlineData("demo")]
    [InlineData("serve")]
    public void EveryCommandHasHelp(string command)
    {
        var r = CliRunner.Run(dir, command, "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("--device", r.Stdout);
    }

    [Fact]
    public void DataListShowsTheBuiltInTasksAndUnknownTasksAreRefused()
    {
        var list = CliRunner.Run(dir, "data", "list");
        Assert.Equal(0, list.ExitCode);
        foreach (var task in new[] { "austen", "fashion_mnist", "kjv", "moby_dick", "needle", "spam_assassin" }) Assert.Contains(task, list.Stdout);
        AssertOneLineError(CliRunner.Run(dir, "train", "--task", "nope", "--device", "cpu"), "unknown task 'nope'");
        AssertOneLineError(CliRunner.Run(dir, "train", "--task", "kjv", "--data", "x.txt", "--device", "cpu"), "data.task");
    }

    [Fact]
    public void DataInspectShowsExamplesAndTheirPackedFeatures()
    {
        var r = CliRunner.Run(dir, "data", "inspect", "austen", "--split", "validation", "-n", "1", "--sequence-length", "32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("Persuasion", r.Stdout);
        Assert.Contains("segment_ids:  [1, 1,", r.Stdout);
        Assert.Contains("positions:    [0, 1, 2,", r.Stdout);
        AssertOneLineError(CliRunner.Run(dir, "data", "inspect", "austen", "--split", "test"), "no split 'test'");
    }

    [Fact]
    public void DataCacheBuildsVerifiesAndRefusesStaleOrExistingCaches()
    {
        string docs = Path.Combine(dir, "docs");
        Directory.CreateDirectory(docs);
        for (int i = 0; i < 6; i++) File.WriteAllText(Path.Combine(docs, $"doc{i}.txt"), $"document {i}: " + new string('x', 10 * i));
        string taskFile = Path.Combine(dir, "notes.json");
        File.WriteAllText(taskFile, """{ "name": "notes", "source": { "type": "text", "path": "docs", "validation_fraction": 0.34 } }""");
        string cache = Path.Combine(dir, "cache");

        var build = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--shards", "2");
        Assert.True(build.ExitCode == 0, build.Stderr);
        Assert.Contains("train: 4 examples; tokens: targets ", build.Stdout);
        Assert.Contains("validation: 2 examples", build.Stdout);
        Assert.Contains($"cache: {Path.Combine(cache, "notes")}", build.Stdout);
        Assert.True(File.Exists(Path.Combine(cache, "notes", "train", "shard-00001-of-00002.tokens")));

        AssertOneLineError(CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache), "--force");
        var ok = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--verify");
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);
        Assert.Contains("train: OK: 4 examples", ok.Stdout);

        File.AppendAllText(Path.Combine(docs, "doc0.txt"), " edited");
        var stale = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--verify", "--split", "train");
        Assert.Equal(1, stale.ExitCode);
        Assert.Contains("train: STALE: ", stale.Stdout);
        Assert.Contains("different task definition/source", stale.Stdout);
        var vocabulary = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--verify", "--vocabulary", "byte+extra_ids=5");
        Assert.Contains("the run uses byte+extra_ids=5", vocabulary.Stdout);

        var rebuilt = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--force");
        Assert.True(rebuilt.ExitCode == 0, rebuilt.Stderr);
        Assert.Equal(0, CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--verify").ExitCode);
        Assert.DoesNotContain(Directory.GetDirectories(Path.Combine(cache, "notes")), d => Path.GetFileName(d).StartsWith('.'));

        AssertOneLineError(CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", cache, "--split", "test"), "no split 'test'");
        var missing = CliRunner.Run(dir, "data", "cache", taskFile, "--cache-dir", Path.Combine(dir, "empty"), "--verify");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("train: MISSING: ", missing.Stdout);
        Assert.Contains("--verify", CliRunner.Run(dir, "data", "cache", "--help").Stdout);
    }

    [Fact]
    public void VocabTrainHasHelp()
    {
        var r = CliRunner.Run(dir, "vocab", "train", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("--vocab-size", r.Stdout);
    }
}
