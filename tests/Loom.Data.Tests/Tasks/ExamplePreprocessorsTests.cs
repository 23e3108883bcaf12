using Loom.Data.Preprocessors;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public class ExamplePreprocessorsTests
{
    private static readonly ByteVocabulary Bytes = new();

    private static PreprocessorContext Context(ulong seed = 5, bool addEos = true, params string[] features) =>
        new("train", seed, (features.Length == 0 ? ["targets"] : features)
            .ToDictionary(f => f, _ => new OutputFeature(Bytes, addEos), StringComparer.Ordinal));

    private static Example Tokens(params int[] targets) => Example.FromTexts(("text", "doc")).WithTokens("targets", targets);

    private static List<Example> Run(IPreprocessor step, PreprocessorContext context, params Example[] examples) =>
        step.Apply(examples, context).ToList();

    [Fact]
    public void Truncate_keeps_the_first_tokens_and_names_its_parameters()
    {
        var output = Run(ExamplePreprocessors.Truncate("targets", 3), Context(), Tokens(4, 5, 6, 7, 8), Tokens(9));
        Assert.Equal(TokenPreprocessors.Truncate([4, 5, 6, 7, 8], 3), output[0].Tokens["targets"]);
        Assert.Equal([9], output[1].Tokens["targets"]);
        Assert.Equal("doc", output[0].Text("text"));
        Assert.Equal("truncate(targets,max_length=3)", ExamplePreprocessors.Truncate("targets", 3).Fingerprint);
        Assert.NotEqual(ExamplePreprocessors.Truncate("targets", 3).Fingerprint, ExamplePreprocessors.Truncate("targets", 4).Fingerprint);
        Assert.NotEqual(ExamplePreprocessors.Truncate("targets", 3).Fingerprint, ExamplePreprocessors.Truncate("inputs", 3).Fingerprint);
        Assert.Contains("'inputs'", Assert.Throws<KeyNotFoundException>(() => Run(ExamplePreprocessors.Truncate("inputs", 3), Context(), Tokens(1))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ExamplePreprocessors.Truncate("targets", -1));
    }

    [Fact]
    public void Append_eos_matches_tokenize_with_add_eos()
    {
        var example = Example.FromTexts(("targets", "héllo"));
        var withEos = Run(ExamplePreprocessors.Tokenize, Context(addEos: true), example)[0].Tokens["targets"];
        var withoutEos = Run(ExamplePreprocessors.Tokenize, Context(addEos: false), example);
        var appended = Run(ExamplePreprocessors.AppendEos("targets"), Context(addEos: false), [.. withoutEos])[0].Tokens["targets"];
        Assert.Equal(withEos, appended);
        Assert.Equal(TokenPreprocessors.AppendEos(Bytes.Encode("héllo"), Bytes.EosId), appended);
        Assert.NotEqual(ExamplePreprocessors.AppendEos("targets").Fingerprint, ExamplePreprocessors.AppendEos("inputs").Fingerprint);
        Assert.Contains("output feature 'inputs'", Assert.Throws<ArgumentException>(() => Run(ExamplePreprocessors.AppendEos("inputs"), Context(), Tokens(1))).Message);
    }

    [Fact]
    public void Tokenize_skips_output_features_without_text_but_not_all_of_them()
    {
        var context = Context(features: ["inputs", "targets"]);
        var output = Run(ExamplePreprocessors.Tokenize, context, Example.FromTexts(("targets", "ab")))[0];
        Assert.Equal(['a', 'b', ByteVocabulary.Eos], output.Tokens["targets"]);
        Assert.False(output.Tokens.ContainsKey("inputs"));
        Assert.Contains("none of the output features", Assert.Throws<KeyNotFoundException>(() => Run(ExamplePreprocessors.Tokenize, context, Example.FromTexts(("text", "ab")))).Message);
    }

    [Fact]
    public void Span_corruption_matches_the_underlying_function_with_the_running_index()
    {
        var vocabulary = new ExtraIdsVocabulary(Bytes, 20);
        var options = new SpanCorruptionOptions();
        var step = ExamplePreprocessors.SpanCorruption(options, vocabulary);
        var docs = Enumerable.Range(0, 6).Select(i => Enumerable.Range(3, 10 + 7 * i).ToArray()).ToArray();
        var output = Run(step, Context(seed: 11), [.. docs.Select(d => Tokens(d))]);
        for (int i = 0; i < docs.Length; i++)
        {
            var (inputs, targets) = SpanCorruption.Apply(docs[i], options, 11, i, vocabulary.SentinelId);
            Assert.Equal(inputs, output[i].Tokens["inputs"]);
            Assert.Equal(targets, output[i].Tokens["targets"]);
            Assert.Equal("doc", output[i].Text("text"));
        }
        // Another seed gives other masks; the same seed the same ones.
        Assert.NotEqual(output.Select(e => e.Tokens["inputs"]), Run(step, Context(seed: 12), [.. docs.Select(d => Tokens(d))]).Select(e => e.Tokens["inputs"]));
        Assert.Equal(output.Select(e => e.Tokens["inputs"]), Run(step, Context(seed: 11), [.. docs.Select(d => Tokens(d))]).Select(e => e.Tokens["inputs"]));

        Assert.StartsWith("span_corruption(noise_density=0.15,mean_noise_span_length=3,sentinels=extra_ids:", step.Fingerprint);
        string custom = ExamplePreprocessors.SpanCorruption(options, "minus", k => 1000 - k).Fingerprint;
        Assert.Equal("span_corruption(noise_density=0.15,mean_noise_span_length=3,sentinels=minus)", custom);
        Assert.NotEqual(custom, ExamplePreprocessors.SpanCorruption(options with { NoiseDensity = 0.3 }, "minus", k => 1000 - k).Fingerprint);
        Assert.NotEqual(custom, ExamplePreprocessors.SpanCorruption(options with { MeanNoiseSpanLength = 2 }, "minus", k => 1000 - k).Fingerprint);
        Assert.NotEqual(step.Fingerprint, ExamplePreprocessors.SpanCorruption(options, new ExtraIdsVocabulary(Bytes, 21)).Fingerprint);
    }

    [Fact]
    public void Prefix_lm_matches_the_underlying_split_with_the_running_index()
    {
        var docs = Enumerable.Range(0, 8).Select(i => Enumerable.Range(10, 2 + i).ToArray()).ToArray();
        var output = Run(ExamplePreprocessors.PrefixLm(), Context(seed: 3), [.. docs.Select(d => Tokens(d))]);
        for (int i = 0; i < docs.Length; i++)
        {
            var (inputs, targets) = PrefixLmSplit.Apply(docs[i], 3, i);
            Assert.Equal(inputs, output[i].Tokens["inputs"]);
            Assert.Equal(targets, output[i].Tokens["targets"]);
            Assert.Equal(docs[i], output[i].Tokens["inputs"].Concat(output[i].Tokens["targets"]));
        }
        Assert.Equal("prefix_lm", ExamplePreprocessors.PrefixLm().Fingerprint);
    }

    [Fact]
    public void Concatenate_documents_chunks_the_token_stream()
    {
        var step = ExamplePreprocessors.ConcatenateDocuments("targets", 4);
        var output = Run(step, Context(), Tokens(1, 2, 3), Tokens(), Tokens(4, 5), Tokens(6, 7, 8, 9));
        Assert.Equal([[1, 2, 3, 4], [5, 6, 7, 8], [9]], output.Select(e => e.Tokens["targets"]));
        Assert.All(output, e => Assert.Empty(e.Texts));
        Assert.Empty(Run(step, Context()));
        Assert.Equal("concatenate_documents(targets,length=4)", step.Fingerprint);
        Assert.NotEqual(step.Fingerprint, ExamplePreprocessors.ConcatenateDocuments("targets", 5).Fingerprint);
        Assert.NotEqual(step.Fingerprint, ExamplePreprocessors.ConcatenateDocuments("inputs", 4).Fingerprint);
        Assert.Throws<ArgumentOutOfRangeException>(() => ExamplePreprocessors.ConcatenateDocuments("targets", 0));
    }

    [Fact]
    public void A_t5_span_corruption_task_runs_end_to_end()
    {
        // T5's order: tokenize "targets" (no EOS), concatenate and chunk, corrupt spans, end both features with EOS.
        var vocabulary = new ExtraIdsVocabulary(Bytes, 10);
        var features = new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary, AddEos: false), ["targets"] = new(vocabulary, AddEos: false) };
        var task = new DataTask("span", new TextSource("the quick brown fox", "jumps over the lazy dog"),
            [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize,
             ExamplePreprocessors.ConcatenateDocuments("targets", 16), ExamplePreprocessors.SpanCorruption(new SpanCorruptionOptions(), vocabulary),
             ExamplePreprocessors.AppendEos("inputs"), ExamplePreprocessors.AppendEos("targets")], features);
        var examples = task.GetDataset("train", seed: 9).ToList();
        Assert.Equal(3, examples.Count); // 42 bytes -> chunks of 16, 16, 10
        var stream = Bytes.Encode("the quick brown fox").Concat(Bytes.Encode("jumps over the lazy dog")).ToArray();
        for (int i = 0; i < examples.Count; i++)
        {
            var chunk = stream.Skip(16 * i).Take(16).ToArray();
            var (inputs, targets) = SpanCorruption.Apply(chunk, new SpanCorruptionOptions(), 9, i, vocabulary.SentinelId);
            Assert.Equal([.. inputs, ByteVocabulary.Eos], examples[i].Tokens["inputs"]);
            Assert.Equal([.. targets, ByteVocabulary.Eos], examples[i].Tokens["targets"]);
        }
        Assert.Contains("span_corruption(", task.Fingerprint);
    }

    private sealed class TextSource(params string[] docs) : IDataSource
    {
        public IReadOnlyList<string> Splits { get; } = ["train"];
        public string Fingerprint => string.Join(",", docs);
        public IEnumerable<Example> Read(string split) => docs.Select(t => Example.FromTexts(("text", t)));
    }
}
