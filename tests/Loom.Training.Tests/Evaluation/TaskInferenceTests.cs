using System.Text.Json.Nodes;
using Loom.Data;
using Loom.Data.Evaluation;
using Loom.Data.Tasks;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Training.Evaluation;
using static TorchSharp.torch;

namespace Loom.Training.Tests.Evaluation;

public class TaskInferenceTests
{
    private static readonly ByteVocabulary Vocabulary = new();

    private sealed class ListSource(string split, params Example[] examples) : IDataSource
    {
        public IReadOnlyList<string> Splits { get; } = [split];
        public string Fingerprint => $"{split}:{examples.Length}";
        public IEnumerable<Example> Read(string s) => examples;
    }

    // Inputs without EOS: a random model then predicts something other than an immediate EOS.
    private static DataTask PairTask(params (string Inputs, string Targets)[] pairs) => new("pairs",
        new ListSource("validation", [.. pairs.Select(p => Example.FromTexts(("inputs", p.Inputs), ("targets", p.Targets)))]),
        [ExamplePreprocessors.Tokenize],
        new Dictionary<string, OutputFeature> { ["inputs"] = new(Vocabulary, AddEos: false), ["targets"] = new(Vocabulary) },
        [new ExactMatch()]);

    private static DataTask LmTask(params string[] docs) => new("lm",
        new ListSource("validation", [.. docs.Select(d => Example.FromTexts(("text", d)))]),
        [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
        new Dictionary<string, OutputFeature> { ["targets"] = new(Vocabulary) });

    private static readonly (string, string)[] Pairs =
    [
        ("It is a truth", " universally"), ("acknowledged, that", " a single man"), ("in possession of a good", " fortune"),
        ("must be in want", " of a wife."), ("However little known", " the feelings"),
    ];

    private static LanguageModel Model(string family)
    {
        ModelOptions options = family == ModelArchitectures.T5
            ? new Loom.Models.T5.T5Options
            {
                VocabSize = Vocabulary.Size, ModelDim = 32, NumEncoderLayers = 2, NumDecoderLayers = 2, NumHeads = 4, HeadDim = 8, MlpDim = 48,
                RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16, MaxSequenceLength = 64, DropoutRate = 0,
            }
            : new DecoderLmOptions
            {
                VocabSize = Vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
            };
        using var generator = new Generator(11);
        return options.Build(generator: generator);
    }

    /// <summary>log P(targets | inputs) of one example, alone in a batch of one, built by hand (no converter).</summary>
    private static double ScoreAlone(LanguageModel model, int[] inputs, int[] targets)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        static Tensor Row(IEnumerable<int> ids) => tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0); // (1, T)
        FeatureBatch batch;
        if (model.IsEncoderDecoder)
        {
            batch = new FeatureBatch(new Dictionary<string, Tensor>
            {
                [FeatureNames.EncoderInputTokens] = Row(inputs),
                [FeatureNames.DecoderInputTokens] = Row([Vocabulary.PadId, .. targets[..^1]]),
                [FeatureNames.DecoderTargetTokens] = Row(targets),
            });
        }
        else
        {
            int[] sequence = [.. inputs, .. targets];
            batch = FeatureBatch.Decoder(Row([Vocabulary.PadId, .. sequence[..^1]]), Row(sequence),
                lossWeights: tensor(sequence.Select((_, i) => i < inputs.Length ? 0f : 1f).ToArray()).unsqueeze(0));
        }
        using (batch) return model.Score(batch).item<float>();
    }

    private static string ReferenceGreedy(LanguageModel model, int[] inputs, int maxTokens)
    {
        int[] prompt = model.IsEncoderDecoder ? inputs : [Vocabulary.PadId, .. inputs];
        var decoded = new ReferenceDecoder().Decode(model, [prompt], new DecodeSettings(maxTokens, Vocabulary.EosId, Vocabulary.PadId))[0];
        return Vocabulary.Decode(decoded.Tokens).Trim();
    }

    [Theory]
    [InlineData(ModelArchitectures.DecoderLm)]
    [InlineData(ModelArchitectures.T5)]
    public void WritesOneLinePerExampleWithScoresOfEachExampleAloneAndReferenceGreedyPredictions(string family)
    {
        using var _ = NewDisposeScope();
        using var model = Model(family);
        using var temp = new TempDirectory();
        model.train(); // inference puts it in eval mode and back
        var task = PairTask(Pairs);
        string output = Path.Combine(temp.Path, "predictions.jsonl");
        var inference = new TaskInference(model, Vocabulary, CPU, new EngineSequenceDecoder(Vocabulary),
            new TaskEvaluationOptions { MaxExamples = 4, BatchSize = 3, MaxDecodeLength = 6 });

        Assert.Equal(4, inference.WriteJsonLines(task, "validation", output));

        Assert.True(model.training);
        Assert.Equal(["predictions.jsonl"], Directory.GetFiles(temp.Path).Select(Path.GetFileName)); // no temporary left behind
        string[] lines = File.ReadAllLines(output);
        Assert.Equal(4, lines.Length);
        var examples = task.GetDataset("validation").Take(4).ToList();
        model.eval();
        for (int i = 0; i < lines.Length; i++)
        {
            var line = JsonNode.Parse(lines[i])!.AsObject();
            Assert.Equal(["index", "inputs", "targets", "prediction", "score"], line.Select(p => p.Key));
            int[] inputs = examples[i].Tokens["inputs"], targets = examples[i].Tokens["targets"];
            Assert.Equal(i, line["index"]!.GetValue<int>());
            Assert.Equal(Pairs[i].Item1, line["inputs"]!.GetValue<string>());
            Assert.Equal(Pairs[i].Item2.Trim(), line["targets"]!.GetValue<string>());
            Assert.Equal(ScoreAlone(model, inputs, targets), line["score"]!.GetValue<double>(), 1e-4);
            Assert.True(line["score"]!.GetValue<double>() < 0);
            Assert.Equal(ReferenceGreedy(model, inputs, 6), line["prediction"]!.GetValue<string>());
        }
    }

    [Fact]
    public void LanguageModellingTasksAreScoredWithoutAPrediction()
    {
        using var _ = NewDisposeScope();
        using var model = Model(ModelArchitectures.DecoderLm);
        var results = new TaskInference(model, Vocabulary, CPU, new ReferenceDecoder(), new TaskEvaluationOptions { BatchSize = 2, MaxDecodeLength = 8 })
            .Infer(LmTask("It is a truth", "universally acknowledged,", "that a single man"), "validation");
        Assert.Equal(3, results.Count);
        model.eval();
        Assert.All(results, r =>
        {
            Assert.Null(r.Prediction);
            Assert.Equal("", r.Inputs);
            Assert.Equal(ScoreAlone(model, [], Vocabulary.Encode(r.Targets).Append(Vocabulary.EosId).ToArray()), r.Score, 1e-4);
        });
        Assert.Null(results[0].ToJsonObject()["prediction"]);
    }

    [Fact]
    public void PredictedIdsBeyondTheVocabularyDecodeToAReplacementCharacterInsteadOfFailing()
    {
        // A model whose embedding is padded far past the byte vocabulary (as t5-tiny's 384 ids for 358):
        // an untrained one predicts ids the vocabulary cannot decode.
        using var _ = NewDisposeScope();
        var options = new DecoderLmOptions
        {
            VocabSize = 1024, ModelDim = 32, NumLayers = 1, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
            SharedEmbeddings = false, // a shared table mostly repeats the last prompt token
        };
        using var generator = new Generator(3);
        using var model = options.Build(generator: generator);
        model.eval();
        var task = PairTask(Pairs);
        var examples = task.GetDataset("validation").ToList();
        var reference = new ReferenceDecoder().Decode(model, [.. examples.Select(e => (int[])[Vocabulary.PadId, .. e.Tokens["inputs"]])],
            new DecodeSettings(6, Vocabulary.EosId, Vocabulary.PadId));
        Assert.Contains(reference, d => d.Tokens.Any(t => t >= Vocabulary.Size)); // the case under test happens

        // The reference decoder hands back raw ids (the engine's streaming detokenizer refuses such ids itself).
        var results = new TaskInference(model, Vocabulary, CPU, new ReferenceDecoder(), new TaskEvaluationOptions { MaxDecodeLength = 6 })
            .Infer(task, "validation");
        for (int i = 0; i < results.Count; i++)
        {
            int[] tokens = reference[i].Tokens;
            int first = Array.FindIndex(tokens, t => t >= Vocabulary.Size);
            if (first < 0) Assert.Equal(Vocabulary.Decode(tokens).Trim(), results[i].Prediction);
            else Assert.StartsWith((Vocabulary.Decode(tokens[..first]) + '\uFFFD').Trim(), results[i].Prediction);
        }
    }

    [Fact]
    public void BadInputIsRefusedAndLeavesNoFileBehind()
    {
        using var _ = NewDisposeScope();
        using var model = Model(ModelArchitectures.DecoderLm);
        using var temp = new TempDirectory();
        var inference = new TaskInference(model, Vocabulary, CPU, new ReferenceDecoder(), new TaskEvaluationOptions { MaxDecodeLength = 8 });
        var task = PairTask(Pairs);

        string existing = Path.Combine(temp.Path, "old.jsonl");
        File.WriteAllText(existing, "old\n");
        var split = Assert.Throws<ArgumentException>(() => inference.WriteJsonLines(task, "test", existing));
        Assert.Contains("no split 'test'", split.Message);
        Assert.Contains("validation", split.Message);
        Assert.Equal("old\n", File.ReadAllText(existing)); // untouched
        Assert.Equal(["old.jsonl"], Directory.GetFiles(temp.Path).Select(Path.GetFileName));

        string missingFolder = Path.Combine(temp.Path, "no", "such", "out.jsonl");
        var unwritable = Assert.Throws<IOException>(() => inference.WriteJsonLines(task, "validation", missingFolder));
        Assert.StartsWith($"cannot write {missingFolder}", unwritable.Message);
        Assert.Contains("existing, writable folder", unwritable.Message);
        Assert.Contains("it is a folder", Assert.Throws<IOException>(() => inference.WriteJsonLines(task, "validation", temp.Path)).Message);
    }
}
