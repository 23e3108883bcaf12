using Loom.Data.Sources;
using Loom.Data;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public class TaskRegistryTests
{
    private sealed class ListSource(params string[] train) : IDataSource
    {
        public IReadOnlyList<string> Splits { get; } = ["train"];
        public string Fingerprint => string.Join(",", train);
        public IEnumerable<Example> Read(string split) => train.Select(t => Example.FromTexts(("text", t)));
    }

    private static DataTask LmTask(string name, params string[] docs) => new(name, new ListSource(docs),
        [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
        new Dictionary<string, OutputFeature> { ["targets"] = new(new ByteVocabulary()) });

    [Fact]
    public void TaskPipelineRekeysTokenizesAndAppendsEos()
    {
        var task = LmTask("tiny", "ab", "é");
        var examples = task.GetDataset("train").ToList();
        Assert.Equal(new[] { 'a', 'b', ByteVocabulary.Eos }, examples[0].Tokens["targets"]);
        Assert.Equal(new[] { 0xC3, 0xA9, ByteVocabulary.Eos }, examples[1].Tokens["targets"]);
        Assert.Equal(["targets"], examples[0].Texts.Keys);
        Assert.Contains("validation", Assert.Throws<ArgumentException>(() => task.GetDataset("validation").ToList()).Message);
    }

    [Fact]
    public void FilterDropsExamplesLazily()
    {
        var task = new DataTask("short", new ListSource("a", "bbbb", "cc"),
            [ExamplePreprocessors.Filter("shorter_than_3", e => e.Text("text").Length < 3), ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
            new Dictionary<string, OutputFeature> { ["targets"] = new(new ByteVocabulary(), AddEos: false) });
        Assert.Equal(new[] { "a", "cc" }, task.GetDataset("train").Select(e => e.Text("targets")));
    }

    [Fact]
    public void NestedMixtureRatesFlattenAndNormalise()
    {
        var registry = new TaskRegistry().Add(LmTask("a", "x")).Add(LmTask("b", "y")).Add(LmTask("c", "z"))
            .Add(new Mixture("ab", [new("a", 1), new("b", 3)]))
            .Add(new Mixture("all", [new("ab", 2), new("c", 2)]));
        var rates = registry.TaskRates("all");
        Assert.Equal(0.125, rates["a"], 12);
        Assert.Equal(0.375, rates["b"], 12);
        Assert.Equal(0.5, rates["c"], 12);
    }

    [Fact]
    public void BadNamesDuplicatesAndUnknownsAreRefusedWithTheKnownNames()
    {
        var registry = new TaskRegistry().Add(LmTask("a", "x"));
        Assert.Contains("already registered", Assert.Throws<ArgumentException>(() => registry.Add(LmTask("a", "y"))).Message);
        Assert.Contains("not a valid", Assert.Throws<ArgumentException>(() => LmTask("Bad-Name")).Message);
        var unknown = Assert.Throws<KeyNotFoundException>(() => registry.GetTask("b"));
        Assert.Contains("tasks: a", unknown.Message);
        Assert.Contains("'zz'", Assert.Throws<ArgumentException>(() => registry.Add(new Mixture("m", [new("zz", 1)]))).Message);
        Assert.Throws<ArgumentException>(() => new Mixture("m", [new("a", 0)]));
    }

    [Fact]
    public void BuiltInsAreRegisteredWithoutFetchingAnything()
    {
        var registry = TaskRegistry.WithBuiltIns(new ByteVocabulary(), cacheRoot: Path.Combine(Path.GetTempPath(), "loom-never-" + Guid.NewGuid().ToString("N")));
        Assert.Equal(new[] { "austen", "fashion_mnist", "kjv", "moby_dick", "needle", "spam_assassin" }, registry.TaskNames);
        Assert.Equal(2, registry.GetTask("spam_assassin").Metrics.Count);
        Assert.Equal(["inputs", "targets"], registry.GetTask("spam_assassin").OutputFeatures.Keys.Order());
    }

    [Fact]
    public void RatesByExampleCountAndSizeFlattenNestedMixtures()
    {
        var registry = new TaskRegistry()
            .Add(LmTask("a", "x", "y", "z", "w")).Add(LmTask("b", "long document here")).Add(LmTask("c", "q", "r"))
            .Add(new Mixture("ab", [new("a"), new("b")], MixtureRateKind.Examples))
            .Add(new Mixture("ab_capped", [new("a"), new("b")], MixtureRateKind.Examples, maximumExamples: 1))
            .Add(new Mixture("by_size", [new("ab"), new("c")], MixtureRateKind.Size));
        TaskSize Size(string t) => TaskStatistics.Measure(registry.GetTask(t));
        Assert.Equal(new TaskSize(4, 8), Size("a")); // 4 one-byte documents, each + EOS
        var byCount = registry.TaskRates("ab", Size);
        Assert.Equal(0.8, byCount["a"], 12);
        Assert.Equal(0.2, byCount["b"], 12);
        var capped = registry.TaskRates("ab_capped", Size);
        Assert.Equal(0.5, capped["a"], 12);
        // By size: ab has 8 + 19 tokens, c has 4; inside ab, a and b split by their counts 4 : 1.
        var bySize = registry.TaskRates("by_size", Size);
        Assert.Equal(27.0 / 31 * 0.8, bySize["a"], 12);
        Assert.Equal(27.0 / 31 * 0.2, bySize["b"], 12);
        Assert.Equal(4.0 / 31, bySize["c"], 12);
        Assert.Contains("sizes are needed", Assert.Throws<ArgumentException>(() => registry.TaskRates("ab")).Message);
        Assert.Throws<ArgumentException>(() => new Mixture("bad", [new("a")], MixtureRateKind.Explicit, maximumExamples: 3));
    }

    [Fact]
    public void FashionMnistIsAnImageTaskWhosePixelsAreTokens()
    {
        var task = TaskRegistry.WithBuiltIns(new ByteVocabulary()).GetTask("fashion_mnist");
        Assert.Equal(["train", "validation", "test"], task.Source.Splits);
        Assert.Equal(["inputs", "targets"], task.OutputFeatures.Keys.Order());
        Assert.Contains(task.Metrics, m => m.Name == "accuracy");

        // The same pipeline over a two-image dataset: pixels pass through as ids, the class name is tokenized.
        var images = new ImageDataset("tiny", 1, 3, ["shirt", "boot"], [new([0, 128, 255], 1), new([7, 7, 7], 0)], [], []);
        var source = new ImageClassificationSource("test", () => images);
        var tiny = new DataTask("tiny", source, task.Preprocessors, task.OutputFeatures, task.Metrics);
        var examples = tiny.GetDataset("train").ToList();
        Assert.Equal([0, 128, 255], examples[0].Tokens["inputs"]);
        Assert.Equal([.. "boot"u8.ToArray().Select(b => (int)b), ByteVocabulary.Eos], examples[0].Tokens["targets"]);
        Assert.Equal("shirt", examples[1].Text("targets"));
    }
}
