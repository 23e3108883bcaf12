using System.Text;
using System.Text.Json.Nodes;
using Loom.Data;
using Loom.Data.Evaluation;
using Loom.Data.Tasks;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Training.Evaluation;
using static TorchSharp.torch;

namespace Loom.Training.Tests.Evaluation;

public class TaskEvaluatorTests
{
    private static readonly ByteVocabulary Vocabulary = new();

    private sealed class ListSource(string split, params Example[] examples) : IDataSource
    {
        public IReadOnlyList<string> Splits { get; } = [split];
        public string Fingerprint => $"{split}:{examples.Length}";
        public IEnumerable<Example> Read(string s) => examples;
    }

    private static DataTask LmTask(string name, string split, params string[] docs) => new(name,
        new ListSource(split, [.. docs.Select(d => Example.FromTexts(("text", d)))]),
        [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
        new Dictionary<string, OutputFeature> { ["targets"] = new(Vocabulary) });

    private static DataTask PairTask(string name, string split, IReadOnlyList<IMetric> metrics, params (string Inputs, string Targets)[] pairs) =>
        PairTask(name, split, metrics, inputsEos: true, pairs);

    // A random model mostly repeats the last prompt token, so inputs ending in EOS would give empty predictions;
    // the prediction tests leave EOS off the inputs to get predictions that differ from example to example.
    private static DataTask PairTask(string name, string split, IReadOnlyList<IMetric> metrics, bool inputsEos, params (string Inputs, string Targets)[] pairs) => new(name,
        new ListSource(split, [.. pairs.Select(p => Example.FromTexts(("inputs", p.Inputs), ("targets", p.Targets)))]),
        [ExamplePreprocessors.Tokenize],
        new Dictionary<string, OutputFeature> { ["inputs"] = new(Vocabulary, AddEos: inputsEos), ["targets"] = new(Vocabulary) },
        metrics);

    private static DecoderLm TinyModel() => new(new DecoderLmOptions
    {
        VocabSize = Vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
    }, generator: new Generator(5));

    /// <summary>Summed nats and token count of each example's targets given its inputs, each run alone through model.Loss.</summary>
    private static (double Nats, long Tokens) ScoreAlone(DecoderLm model, IEnumerable<(int[] Inputs, int[] Targets)> examples)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double nats = 0;
        long tokens = 0;
        foreach (var (inputs, targets) in examples)
        {
            int[] sequence = [.. inputs, .. targets];
            long[] x = [Vocabulary.PadId, .. sequence[..^1].Select(t => (long)t)]; // the start token, then the sequence shifted right
            long[] y = [.. sequence.Select((t, i) => i < inputs.Length ? -1L : t)]; // inputs are not scored
            var loss = model.Loss(tensor(x).unsqueeze(0), tensor(y).unsqueeze(0), zLossWeight: 0).CrossEntropy.item<float>();
            nats += loss * targets.Length;
            tokens += targets.Length;
        }
        return (nats, tokens);
    }

    private static List<string> GreedyByHand(DecoderLm model, IEnumerable<int[]> inputs, int maxTokens)
    {
        var generator = new TextGenerator(model, Vocabulary.EosId);
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = maxTokens };
        return [.. inputs.Select(i => Vocabulary.Decode([.. generator.Generate([Vocabulary.PadId, .. i], sampling)]).Trim())];
    }

    private static (int[] Inputs, int[] Targets) Tokens(Example e) =>
        (e.Tokens.TryGetValue("inputs", out var i) ? i : [], e.Tokens["targets"]);

    [Fact]
    public void ScoreEqualsEachExampleScoredAloneAndRestoresTrainingMode()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        var lm = LmTask("lm", "validation", "It is a truth", "universally acknowledged,", "that a single man", "in possession", "of a good fortune");
        var pairs = PairTask("pairs", "validation", [], ("2+2=", "4"), ("capital of France:", "Paris"), ("é?", "ü"));
        var evaluator = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 48, BatchSize = 2, MaxDecodeLength = 8 });
        foreach (var task in new[] { lm, pairs })
        {
            model.train();
            var result = evaluator.Evaluate(task, "validation");
            Assert.True(model.training);

            var examples = task.GetDataset("validation").ToList();
            var (nats, tokens) = ScoreAlone(model, examples.Select(Tokens));
            Assert.Equal(examples.Count, result.ExampleCount);
            Assert.Equal(tokens, result.Score.TokenCount);
            Assert.Equal(nats / tokens, result.Score.Loss, 1e-5);
            Assert.Equal(Math.Exp(result.Score.Loss), result.Score.Perplexity, 1e-9);
            long bytes = examples.Sum(e => (long)Encoding.UTF8.GetByteCount(e.Text("targets")));
            Assert.Equal(bytes, result.Score.ByteCount);
            Assert.Equal(result.Score.TotalNats / bytes / Math.Log(2), result.Score.BitsPerByte, 1e-9);
            Assert.Equal(0, result.Score.TruncatedExamples);
            Assert.Empty(result.Metrics); // no metrics, so nothing predicted
        }
        model.eval();
        evaluator.Evaluate(lm, "validation");
        Assert.False(model.training);
    }

    [Fact]
    public void LongExamplesLoseInputsFromTheFrontThenTargetsFromTheEnd()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        string longInput = new('x', 50), longTarget = new('y', 30);
        var task = PairTask("long", "test", [], (longInput, "ok"), ("hi", longTarget), ("short", "fine"));
        var result = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 20, Predict = false }).Evaluate(task, "test");

        var e = task.GetDataset("test").ToList();
        var (nats, tokens) = ScoreAlone(model, [
            // Training keeps room for the task's longest target with inputs (31 tokens) capped at half the row (10),
            // whatever this example's own target needs: the last 10 input tokens stay.
            (Tokens(e[0]).Inputs[^10..], Tokens(e[0]).Targets),
            ([], Tokens(e[1]).Targets[..20]),                   // the targets alone are too long: their first 20 tokens
            Tokens(e[2])]);
        Assert.Equal(2, result.Score.TruncatedExamples);
        Assert.Equal(tokens, result.Score.TokenCount);
        Assert.Equal(nats / tokens, result.Score.Loss, 1e-5);
        Assert.Equal(2 + 20 + 4, result.Score.ByteCount); // the truncated targets count only the bytes scored
    }

    [Fact]
    public void PredictionsEqualGreedyDecodingByHandAndMetricsScoreThem()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        string[] inputs = ["abc", "hello there", "12+3=", "é"];
        var options = new TaskEvaluationOptions { SequenceLength = 40, MaxDecodeLength = 6, PredictionsToKeep = 10 };
        var evaluator = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), options);
        var byHand = GreedyByHand(model, inputs.Select(Vocabulary.Encode), options.MaxDecodeLength);
        Assert.All(byHand, p => Assert.NotEmpty(p));
        Assert.True(byHand.Distinct().Count() > 2, "the predictions should differ from example to example");

        // Targets that are the model's own greedy output: every prediction matches.
        var own = PairTask("own", "validation", [new ExactMatch(normalize: false), new Accuracy()], inputsEos: false, [.. inputs.Zip(byHand)]);
        model.train();
        var result = evaluator.Evaluate(own, "validation");
        Assert.True(model.training);
        Assert.Equal(byHand, result.Predictions.Select(p => p.Prediction));
        Assert.Equal(byHand, result.Predictions.Select(p => p.Target));
        Assert.Equal(inputs, result.Predictions.Select(p => p.Inputs));
        Assert.Equal([0, 1, 2, 3], result.Predictions.Select(p => p.Index));
        Assert.Equal([new MetricResult("exact_match", 100), new MetricResult("accuracy", 100)], result.Metrics);

        // Half the targets changed: half the score; none right: zero.
        string[] half = [byHand[0], "not " + byHand[1], byHand[2], "not " + byHand[3]];
        var halfRight = evaluator.Evaluate(PairTask("half", "validation", [new ExactMatch(normalize: false)], inputsEos: false, [.. inputs.Zip(half)]), "validation");
        Assert.Equal(50, halfRight.Metrics.Single().Value, 1e-9);
        Assert.Equal(byHand, halfRight.Predictions.Select(p => p.Prediction));
        var wrong = evaluator.Evaluate(PairTask("wrong", "validation", [new ExactMatch(normalize: false)], inputsEos: false, [.. inputs.Select(i => (i, "not " + i))]), "validation");
        Assert.Equal(0, wrong.Metrics.Single().Value);

        // Inputs ending in EOS: the prompt is still the start token and the inputs, EOS included.
        var withEos = evaluator.Evaluate(PairTask("eos", "validation", [new ExactMatch()], [.. inputs.Zip(half)]), "validation");
        Assert.Equal(GreedyByHand(model, inputs.Select(i => (int[])[.. Vocabulary.Encode(i), Vocabulary.EosId]), options.MaxDecodeLength),
            withEos.Predictions.Select(p => p.Prediction));
    }

    [Fact]
    public void PredictionsStopAtTheLongestTargetAndPromptsKeepTheRoomItLeaves()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        string input = new string('x', 30) + "abcdefghij";
        var options = new TaskEvaluationOptions { SequenceLength = 20, MaxDecodeLength = 18, PredictionsToKeep = 10 };
        var evaluator = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), options);
        var result = evaluator.Evaluate(PairTask("short", "validation", [new ExactMatch(normalize: false)], inputsEos: false, [(input, "ok"), (input[5..], "yes")]), "validation");

        // The longest target is "yes" (3 tokens before EOS): at most 3 tokens are decoded, not 18, and each prompt
        // keeps the last L − 3 − 1 = 16 input tokens (the start token takes one place), not L − 18 − 1 = 1.
        var byHand = GreedyByHand(model, [Vocabulary.Encode(input)[^16..], Vocabulary.Encode(input[5..])[^16..]], 3);
        Assert.Equal(byHand, result.Predictions.Select(p => p.Prediction));
        Assert.All(result.Predictions, p => Assert.True(Vocabulary.Encode(p.Prediction).Length <= 3, p.Prediction));
    }

    [Fact]
    public void PredictionsToKeepLimitsTheLogNotTheMetricsAndPostprocessorsApplyToBothSides()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        string[] inputs = ["one", "two", "three"];
        var byHand = GreedyByHand(model, inputs.Select(Vocabulary.Encode), 4);
        Assert.All(byHand, p => Assert.NotEmpty(p));
        var marked = Postprocessors.Chain(Postprocessors.Trim, Postprocessors.Create("mark", t => $"<{t}>"));
        var options = new TaskEvaluationOptions
        {
            SequenceLength = 32, MaxDecodeLength = 4, PredictionsToKeep = 1,
            TaskPostprocessors = new Dictionary<string, IPostprocessor> { ["own"] = marked },
        };
        // Targets padded with spaces still match once trimmed.
        var task = PairTask("own", "validation", [new ExactMatch(normalize: false)], inputsEos: false, [.. inputs.Zip(byHand.Select(p => $"  {p} "))]);
        var result = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), options).Evaluate(task, "validation");
        Assert.Equal(100, result.Metrics.Single().Value);
        var only = Assert.Single(result.Predictions);
        Assert.Equal($"<{byHand[0]}>", only.Prediction);
        Assert.Equal($"<{byHand[0]}>", only.Target);
        Assert.Equal("trim+mark", options.PostprocessorFor("own").Name);
        Assert.Same(Postprocessors.Trim, options.PostprocessorFor("other"));
    }

    [Fact]
    public void MixtureGivesOneEntryPerTaskAndACombinedLine()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        var registry = new TaskRegistry()
            .Add(LmTask("lm", "validation", "It is a truth", "universally acknowledged"))
            .Add(PairTask("pairs", "validation", [new ExactMatch()], ("2+2=", "4"), ("1+1=", "2"), ("3+3=", "6")))
            .Add(new Mixture("both", [new("lm", 1), new("pairs", 3)]));
        var evaluator = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 32, MaxDecodeLength = 4 });
        var result = evaluator.EvaluateMixture(registry, "both", "validation");

        Assert.Equal(["lm", "pairs"], result.Tasks.Select(t => t.Task));
        Assert.Equal(5, result.ExampleCount);
        Assert.Equal(result.Tasks.Sum(t => t.Score.TokenCount), result.Score.TokenCount);
        Assert.Equal(result.Tasks.Sum(t => t.Score.TotalNats) / result.Score.TokenCount, result.Score.Loss, 1e-12);
        Assert.Equal("exact_match", Assert.Single(result.MeanMetrics).Name);
        var lines = result.ToString().Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("lm/validation: loss ", lines[0]);
        Assert.StartsWith("pairs/validation: loss ", lines[1]);
        Assert.Contains("exact_match", lines[1]);
        Assert.StartsWith("both/validation (2 tasks): loss ", lines[2]);
        Assert.EndsWith("(5 examples)", lines[2]);

        var json = JsonNode.Parse(result.ToJsonObject().ToJsonString())!.AsObject();
        Assert.Equal("both", (string?)json["mixture"]);
        Assert.Equal(2, json["tasks"]!.AsArray().Count);
        Assert.Equal(result.Score.Loss, (double)json["loss"]!, 1e-12);

        // The same tasks as a list give the same numbers.
        var listed = evaluator.EvaluateTasks("both", [registry.GetTask("lm"), registry.GetTask("pairs")], "validation");
        Assert.Equal(result.ToString(), listed.ToString());
    }

    [Fact]
    public void MissingSplitsForeignVocabulariesAndBadLengthsAreRefusedClearly()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        var evaluator = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 32, MaxDecodeLength = 4 });
        var trainOnly = LmTask("train_only", "train", "some text");
        var error = Assert.Throws<ArgumentException>(() => evaluator.Evaluate(trainOnly, "validation"));
        Assert.Contains("'train_only' has no split 'validation'", error.Message);
        Assert.Contains("it has: train", error.Message);

        // A mixture is checked whole before any task is evaluated.
        var registry = new TaskRegistry().Add(LmTask("ok", "validation", "text")).Add(trainOnly).Add(new Mixture("mix", [new("ok", 1), new("train_only", 1)]));
        Assert.Contains("'train_only' has no split", Assert.Throws<ArgumentException>(() => evaluator.EvaluateMixture(registry, "mix", "validation")).Message);
        Assert.Throws<KeyNotFoundException>(() => evaluator.EvaluateMixture(registry, "nope", "validation"));

        var foreign = new DataTask("foreign", new ListSource("validation", Example.FromTexts(("targets", "x"))), [ExamplePreprocessors.Tokenize],
            new Dictionary<string, OutputFeature> { ["targets"] = new(new ShiftedVocabulary()) });
        Assert.Contains("vocabulary 'shifted'", Assert.Throws<ArgumentException>(() => evaluator.Evaluate(foreign, "validation")).Message);

        var untokenized = new DataTask("raw", new ListSource("validation", Example.FromTexts(("targets", "x"))), [],
            new Dictionary<string, OutputFeature> { ["targets"] = new(Vocabulary) });
        Assert.Contains("ExamplePreprocessors.Tokenize", Assert.Throws<InvalidOperationException>(() => evaluator.Evaluate(untokenized, "validation")).Message);

        Assert.Contains("max_sequence_length", Assert.Throws<ArgumentException>(() => new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 65 })).Message);
        Assert.Contains("at most 30", Assert.Throws<ArgumentException>(() => new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 32, MaxDecodeLength = 31 })).Message);
        Assert.Throws<ArgumentException>(() => new TaskEvaluationOptions { BatchSize = 0 });
        Assert.Throws<ArgumentException>(() => new TaskEvaluationOptions { MaxExamples = 0 });
        Assert.Throws<ArgumentException>(() => new TaskEvaluationOptions { PredictionsToKeep = -1 });
    }

    [Fact]
    public void MaxExamplesReadsOnlyTheFirstExamples()
    {
        using var _ = NewDisposeScope();
        using var model = TinyModel();
        var task = LmTask("lm", "validation", "first", "second", "third");
        var result = new TaskEvaluator(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary), new TaskEvaluationOptions { SequenceLength = 16, MaxExamples = 2, Predict = false }).Evaluate(task, "validation");
        Assert.Equal(2, result.ExampleCount);
        var (nats, tokens) = ScoreAlone(model, task.GetDataset("validation").Take(2).Select(Tokens));
        Assert.Equal(tokens, result.Score.TokenCount);
        Assert.Equal(nats / tokens, result.Score.Loss, 1e-5);
    }

    /// <summary>A byte vocabulary under another name and with shifted ids: a different tokenizer.</summary>
    private sealed class ShiftedVocabulary : IVocabulary
    {
        public string Name => "shifted";
        public int Size => Vocabulary.Size;
        public int EosId => Vocabulary.EosId;
        public int PadId => Vocabulary.PadId;
        public int[] Encode(string text) => [.. Vocabulary.Encode(text).Select(b => (b + 1) % 256)];
        public string Decode(ReadOnlySpan<int> ids) => Vocabulary.Decode(ids);
    }
}
