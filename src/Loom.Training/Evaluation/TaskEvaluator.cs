using System.Text;
using Loom.Data;
using Loom.Data.Evaluation;
using Loom.Data.FeatureConverters;
using Loom.Data.Tasks;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training.Evaluation;

/// <summary>
/// Evaluates a <see cref="LanguageModel"/> of any family on tasks' splits, as seqio's <c>Evaluator</c>: every task is
/// scored (the likelihood of its "targets" given its "inputs", if any), and tasks with inputs and
/// metrics are also predicted (greedy decoding from the inputs) and their metrics computed.
/// </summary>
/// <remarks>
/// <para>
/// Scoring: each example is shortened as training shortens it (<see cref="PackedTrainingBatches.Fit"/>)
/// and packed into the rows training uses for the model's family: for a decoder-only model one sequence,
/// inputs followed by targets (<see cref="PrefixLmFeatureConverter"/>, so the start token, the
/// vocabulary's pad id, precedes each sequence), with loss weight only on target tokens; for an
/// encoder-decoder the inputs go to the encoder and the targets to the decoder
/// (<see cref="EncoderDecoderFeatureConverter"/>). Packing leaves each example's score exactly what it
/// would be alone.
/// </para>
/// <para>
/// Predicting: the prompt is the context from which scoring predicts the first target token (the start
/// token and the inputs for a decoder-only model, the inputs for an encoder-decoder); every example is
/// decoded greedily by the injected <see cref="ISequenceDecoder"/> (an inference engine, or the
/// <see cref="ReferenceDecoder"/>) until EOS or <see cref="TaskEvaluationOptions.MaxDecodeLength"/> tokens. The decoded prediction and the
/// decoded targets (both through the vocabulary, so tokenizer normalisation affects them alike) are
/// postprocessed and handed to the task's metrics.
/// </para>
/// <para>
/// The model is put in evaluation mode for the call and returned to training mode afterwards if it was
/// in it. The task's examples must already be tokenized (the token features "targets" and, for
/// inputs/targets tasks, "inputs") with the evaluator's vocabulary.
/// </para>
/// </remarks>
public sealed class TaskEvaluator
{
    /// <summary>The token feature that is scored and predicted.</summary>
    public const string TargetsFeature = "targets";

    /// <summary>The token feature that conditions the targets, when a task has it.</summary>
    public const string InputsFeature = "inputs";

    private readonly string vocabularyFingerprint;
    private readonly int startId;

    /// <summary>Creates an evaluator.</summary>
    /// <param name="model">The model; it must live on <paramref name="device"/>.</param>
    /// <param name="vocabulary">The vocabulary the model and the tasks use; at most the model's vocabulary size.</param>
    /// <param name="device">Where the model lives and the batches go.</param>
    /// <param name="decoder">Decodes the predictions (t5x's <c>predict_batch</c>), injected so that evaluation does not depend on an inference engine.</param>
    /// <param name="options">The settings; null = the defaults.</param>
    /// <exception cref="ArgumentException">
    /// The vocabulary does not fit the model, the model is elsewhere, the sequence length exceeds the
    /// model's, or (when predicting) the decode length leaves no room for a prompt.
    /// </exception>
    public TaskEvaluator(LanguageModel model, IVocabulary vocabulary, Device device, ISequenceDecoder decoder, TaskEvaluationOptions? options = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Decoder = decoder ?? throw new ArgumentNullException(nameof(decoder));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        Device = device ?? throw new ArgumentNullException(nameof(device));
        Options = options ?? new TaskEvaluationOptions();
        int context = model.Options.MaxSequenceLength;
        if (vocabulary.Size > model.Options.VocabSize)
            throw new ArgumentException($"vocabulary '{vocabulary.Name}' has {vocabulary.Size} ids but the model only {model.Options.VocabSize}: evaluate with the vocabulary the model was trained with");
        var modelDevice = model.parameters().First().device;
        if (modelDevice.type != device.type || (modelDevice.index >= 0 && device.index >= 0 && modelDevice.index != device.index))
            throw new ArgumentException($"the model is on {modelDevice} but the evaluation device is {device}: move the model with model.to(device) or pass its device");
        SequenceLength = Options.SequenceLength ?? context;
        if (SequenceLength > context)
            throw new ArgumentException($"evaluation sequence length = {SequenceLength} exceeds model.max_sequence_length = {context}: lower it or leave it unset");
        if (Options.Predict && Options.MaxDecodeLength > SequenceLength - 2)
            throw new ArgumentException($"max decode length = {Options.MaxDecodeLength} leaves no room for a prompt in the sequence length of {SequenceLength}: use at most {SequenceLength - 2}, or turn prediction off");
        vocabularyFingerprint = VocabularyFingerprint.Of(vocabulary);
        startId = DecoderFeatureOptions.ForVocabulary(vocabulary, SequenceLength).StartId;
    }

    /// <summary>The model evaluated.</summary>
    public LanguageModel Model { get; }

    /// <summary>What decodes the predictions.</summary>
    public ISequenceDecoder Decoder { get; }

    /// <summary>The vocabulary of the model and the tasks.</summary>
    public IVocabulary Vocabulary { get; }

    /// <summary>Where the model lives.</summary>
    public Device Device { get; }

    /// <summary>The settings.</summary>
    public TaskEvaluationOptions Options { get; }

    /// <summary>L in effect: <see cref="TaskEvaluationOptions.SequenceLength"/>, or the model's maximum.</summary>
    public int SequenceLength { get; }

    /// <summary>Scores, and where it applies predicts, <paramref name="split"/> of <paramref name="task"/>.</summary>
    /// <param name="task">A task whose examples carry token features.</param>
    /// <param name="split">The split, e.g. <c>validation</c>.</param>
    /// <returns>The result.</returns>
    /// <exception cref="ArgumentException">The task has no such split, no "targets" feature, or another vocabulary.</exception>
    /// <exception cref="InvalidOperationException">An example lacks a token feature (the pipeline does not tokenize).</exception>
    public TaskEvaluationResult Evaluate(DataTask task, string split)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(split);
        bool hasInputs = CheckTask(task, split);
        var examples = ReadExamples(task, split, hasInputs);
        bool predict = Options.Predict && hasInputs && task.Metrics.Count > 0 && examples.Count > 0;
        return InEvalMode(() =>
        {
            var score = Score(examples, hasInputs);
            var (metrics, predictions) = predict ? Predict(task, examples) : ([], []);
            return new TaskEvaluationResult(task.Name, split, examples.Count, score, metrics, predictions);
        });
    }

    /// <summary>Runs <paramref name="run"/> with the model in evaluation mode, returning it to training mode afterwards if it was in it.</summary>
    internal T InEvalMode<T>(Func<T> run)
    {
        bool wasTraining = Model.training;
        Model.eval();
        try
        {
            return run();
        }
        finally
        {
            if (wasTraining) Model.train();
        }
    }

    /// <summary>Evaluates every task of a mixture (nested mixtures flattened) on <paramref name="split"/>.</summary>
    /// <param name="registry">The registry holding the mixture and its tasks.</param>
    /// <param name="mixtureName">The mixture's name.</param>
    /// <param name="split">The split.</param>
    /// <returns>One result per task, in the order of <see cref="TaskRegistry.TaskRates"/>, and the combined line.</returns>
    /// <exception cref="KeyNotFoundException">No such mixture.</exception>
    /// <exception cref="ArgumentException">A task has no such split (checked before any is evaluated), or see <see cref="Evaluate"/>.</exception>
    public MixtureEvaluationResult EvaluateMixture(TaskRegistry registry, string mixtureName, string split)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(mixtureName);
        return EvaluateTasks(mixtureName, [.. registry.TaskRates(mixtureName).Keys.Select(registry.GetTask)], split);
    }

    /// <summary>Evaluates several tasks on <paramref name="split"/>.</summary>
    /// <param name="name">A label for the combined line, such as a mixture's name.</param>
    /// <param name="tasks">The tasks, at least one.</param>
    /// <param name="split">The split.</param>
    /// <returns>One result per task, in the given order, and the combined line.</returns>
    /// <exception cref="ArgumentException">There are no tasks, a task has no such split (checked before any is evaluated), or see <see cref="Evaluate"/>.</exception>
    public MixtureEvaluationResult EvaluateTasks(string name, IReadOnlyList<DataTask> tasks, string split)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(tasks);
        ArgumentNullException.ThrowIfNull(split);
        if (tasks.Count == 0) throw new ArgumentException($"'{name}' has no tasks to evaluate", nameof(tasks));
        foreach (var task in tasks) CheckTask(task ?? throw new ArgumentNullException(nameof(tasks)), split);
        return new MixtureEvaluationResult(name, split, [.. tasks.Select(t => Evaluate(t, split))]);
    }

    /// <summary>Checks that the task can be evaluated here; returns whether it has inputs.</summary>
    internal bool CheckTask(DataTask task, string split)
    {
        if (!task.Source.Splits.Contains(split))
            throw new ArgumentException($"task '{task.Name}' has no split '{split}' (it has: {string.Join(", ", task.Source.Splits)}): pick one of those");
        if (!task.OutputFeatures.ContainsKey(TargetsFeature))
            throw new ArgumentException($"task '{task.Name}' has no \"{TargetsFeature}\" feature (it has: {string.Join(", ", task.OutputFeatures.Keys)}): only tasks with targets can be evaluated");
        bool hasInputs = task.OutputFeatures.ContainsKey(InputsFeature);
        foreach (string feature in Features(hasInputs))
        {
            var vocabulary = task.OutputFeatures[feature].Vocabulary;
            if (VocabularyFingerprint.Of(vocabulary) != vocabularyFingerprint)
                throw new ArgumentException($"task '{task.Name}' tokenizes \"{feature}\" with vocabulary '{vocabulary.Name}', not the evaluator's '{Vocabulary.Name}': build the task with the model's vocabulary");
        }
        return hasInputs;
    }

    private static string[] Features(bool hasInputs) => hasInputs ? [InputsFeature, TargetsFeature] : [TargetsFeature];

    /// <summary>The first examples of the split (up to <see cref="TaskEvaluationOptions.MaxExamples"/>), checked for their token features.</summary>
    internal List<Example> ReadExamples(DataTask task, string split, bool hasInputs)
    {
        var dataset = task.GetDataset(split, Options.Seed);
        var examples = (Options.MaxExamples is int max ? dataset.Take(max) : dataset).ToList();
        for (int i = 0; i < examples.Count; i++)
            foreach (string feature in Features(hasInputs))
                if (!examples[i].Tokens.ContainsKey(feature))
                    throw new InvalidOperationException($"task '{task.Name}' example {i} of '{split}' has no token feature \"{feature}\": end the task's pipeline with ExamplePreprocessors.Tokenize");
        return examples;
    }

    /// <summary>The room for targets in these examples' rows, as training keeps it (<see cref="PackedTrainingBatches.TargetsRoom"/>).</summary>
    internal int TargetsRoom(IReadOnlyList<Example> examples, bool hasInputs) => hasInputs
        ? PackedTrainingBatches.TargetsRoom(examples.Select(e => (e.Tokens[InputsFeature].Length, e.Tokens[TargetsFeature].Length)), SequenceLength)
        : 0;

    /// <summary>The summed likelihood of every example's targets given its inputs, in packed batches.</summary>
    private ScoreResult Score(IReadOnlyList<Example> examples, bool hasInputs)
    {
        var sequences = new List<(int[] Inputs, int[] Targets)>();
        long bytes = 0, tokens = 0;
        int truncated = 0;
        int room = TargetsRoom(examples, hasInputs);
        foreach (var example in examples)
        {
            if (Fit(example, hasInputs, room) is not { } fitted) continue; // nothing to score
            var (keptInputs, keptTargets, wasTruncated) = fitted;
            int[] targets = example.Tokens[TargetsFeature];
            if (wasTruncated) truncated++;
            bytes += keptTargets.Length < targets.Length
                ? Encoding.UTF8.GetByteCount(Vocabulary.Decode(keptTargets)) // only the scored part counts
                : Encoding.UTF8.GetByteCount(example.Texts.TryGetValue(TargetsFeature, out var text) ? text : Vocabulary.Decode(targets));
            tokens += keptTargets.Length;
            sequences.Add((keptInputs, keptTargets));
        }
        if (sequences.Count == 0) return new ScoreResult(0, 0, bytes, truncated);

        using var evaluation = NewDisposeScope();
        var totalNats = zeros(1, float64, Device); // (1), summed on the device: one host sync at the end
        ScoreRows(sequences, pack: true, rowScores => totalNats.add_(-rowScores.sum().to(float64))); // this batch's summed nats
        return new ScoreResult(totalNats.item<double>(), tokens, bytes, truncated);
    }

    /// <summary>
    /// An example's inputs and targets as scoring sees them: shortened as training shortens them
    /// (<see cref="PackedTrainingBatches.Fit"/>, with the room <see cref="TargetsRoom"/> gives), with whether
    /// tokens were lost; null when it has no target to score.
    /// </summary>
    internal (int[] Inputs, int[] Targets, bool Truncated)? Fit(Example example, bool hasInputs, int targetsRoom)
    {
        int[] targets = example.Tokens[TargetsFeature];
        if (targets.Length == 0) return null;
        int[] inputs = hasInputs ? example.Tokens[InputsFeature] : [];
        var (keptInputs, keptTargets) = PackedTrainingBatches.Fit(inputs, targets, SequenceLength, targetsRoom);
        return (keptInputs, keptTargets, keptInputs.Length + keptTargets.Length < inputs.Length + targets.Length);
    }

    /// <summary>
    /// Scores <paramref name="sequences"/> in batches of <see cref="TaskEvaluationOptions.BatchSize"/> rows
    /// made by the model family's feature converter, packed (several sequences per row, each scored as if
    /// alone) or one sequence per row, and hands each batch's per-row scores, (B) on the device, to
    /// <paramref name="consume"/> inside the batch's dispose scope.
    /// </summary>
    internal void ScoreRows(List<(int[] Inputs, int[] Targets)> sequences, bool pack, Action<Tensor> consume)
    {
        var batches = Model.IsEncoderDecoder ? EncoderDecoderBatches(sequences, pack) : DecoderBatches(sequences, pack);
        using var noGrad = no_grad();
        foreach (var makeBatch in batches)
        {
            using var batchScope = NewDisposeScope();
            using var batch = makeBatch();
            consume(Model.Score(batch.To(Device))); // (B)
        }
    }

    /// <summary>
    /// The rows training uses for a decoder-only model: inputs ++ targets per segment, loss weight on the
    /// targets only (attention stays causal: the converter's bidirectional-prefix feature is not used).
    /// </summary>
    private IEnumerable<Func<FeatureBatch>> DecoderBatches(List<(int[] Inputs, int[] Targets)> sequences, bool pack)
    {
        var converter = new PrefixLmFeatureConverter(PrefixLmFeatureOptions.ForVocabulary(Vocabulary, SequenceLength) with { Pack = pack });
        var (rows, stats) = converter.Convert(sequences);
        CheckSegments(stats.Segments, sequences.Count);
        var all = rows.ToList();
        for (int start = 0; start < all.Count; start += Options.BatchSize)
        {
            var slice = all.GetRange(start, Math.Min(Options.BatchSize, all.Count - start));
            yield return () =>
            {
                var batch = PrefixLmFeatureConverter.ToTensors(slice); // (B, L) each
                batch.CausalAttention.Dispose();
                return FeatureBatch.Decoder(batch.Tokens, batch.Targets, batch.SegmentIds, batch.Positions, batch.LossWeights);
            };
        }
    }

    /// <summary>The rows training uses for an encoder-decoder: inputs to the encoder, targets to the decoder, each side L tokens.</summary>
    private IEnumerable<Func<FeatureBatch>> EncoderDecoderBatches(List<(int[] Inputs, int[] Targets)> sequences, bool pack)
    {
        var converter = new EncoderDecoderFeatureConverter(EncoderDecoderFeatureOptions.ForVocabulary(Vocabulary, SequenceLength, SequenceLength) with { Pack = pack });
        var (rows, stats) = converter.Convert(sequences);
        CheckSegments(stats.Decoder.Segments, sequences.Count);
        var all = rows.ToList();
        for (int start = 0; start < all.Count; start += Options.BatchSize)
        {
            var slice = all.GetRange(start, Math.Min(Options.BatchSize, all.Count - start));
            yield return () => EncoderDecoderFeatureConverter.ToTensors(slice).ToFeatures(); // (B, L) each
        }
    }

    private static void CheckSegments(int segments, int sequences)
    {
        if (segments != sequences)
            throw new InvalidOperationException($"packing made {segments} segments of {sequences} sequences that all fit a row");
    }

    /// <summary>Greedy predictions for every example, and the task's metrics over them.</summary>
    private (IReadOnlyList<MetricResult> Metrics, IReadOnlyList<ExamplePrediction> Kept) Predict(DataTask task, IReadOnlyList<Example> examples)
    {
        var all = PredictAll(task, examples, Options.PredictionsToKeep);
        var targets = all.Select(p => p.Target).ToList();
        var predictions = all.Select(p => p.Prediction).ToList();
        return ([.. task.Metrics.Select(m => m.Compute(targets, predictions))], [.. all.Take(Options.PredictionsToKeep)]);
    }

    /// <summary>
    /// Greedy predictions for every example (which must have inputs), postprocessed by the task's
    /// postprocessor, with their postprocessed targets; the inputs text is filled in for the first
    /// <paramref name="withInputs"/> examples only (empty for the rest), since decoding it costs time.
    /// </summary>
    internal IReadOnlyList<ExamplePrediction> PredictAll(DataTask task, IReadOnlyList<Example> examples, int withInputs)
    {
        var postprocessor = Options.PostprocessorFor(task.Name);
        int budget = DecodeBudget(examples);
        // A decoder-only prompt shares the context with the answer; an encoder takes up to L inputs.
        int promptRoom = Model.IsEncoderDecoder ? SequenceLength : SequenceLength - budget - 1; // the start token takes one place
        int[][] prompts = [.. examples.Select(e => e.Tokens[InputsFeature]).Select(inputs => inputs.Length > promptRoom ? inputs[^promptRoom..] : inputs)
            .Select(inputs => Model.IsEncoderDecoder ? inputs : (int[])[startId, .. inputs])];
        var decoded = Decoder.Decode(Model, prompts, new DecodeSettings(budget, Vocabulary.EosId, startId, Options.BatchSize, Vocabulary.Size));
        var all = new List<ExamplePrediction>(examples.Count);
        for (int i = 0; i < examples.Count; i++)
        {
            var example = examples[i];
            string prediction = postprocessor.Apply(DecodePrediction(decoded[i].Tokens));
            string target = postprocessor.Apply(Vocabulary.Decode(example.Tokens[TargetsFeature]));
            all.Add(new ExamplePrediction(i, i < withInputs ? InputsText(example) : "", target, prediction, decoded[i].Finished));
        }
        return all;
    }

    /// <summary>
    /// Tokens to generate per prediction: the longest target among <paramref name="examples"/>, EOS not
    /// counted (seqio decodes up to the targets feature length), at most <see cref="TaskEvaluationOptions.MaxDecodeLength"/>.
    /// No prediction longer than every reference can match one; and a decoder-only prompt keeps the room
    /// the budget leaves it, so a task with short answers (a label) is prompted with as much of its inputs
    /// as training gave it rather than L − 64 tokens.
    /// </summary>
    internal int DecodeBudget(IReadOnlyList<Example> examples)
    {
        int longest = examples.Select(e => e.Tokens[TargetsFeature]).Select(t => t.Length > 0 && t[^1] == Vocabulary.EosId ? t.Length - 1 : t.Length)
            .DefaultIfEmpty(0).Max();
        return Math.Clamp(longest, 1, Options.MaxDecodeLength);
    }

    /// <summary>
    /// Decodes a prediction. A model's embedding may be padded past its vocabulary (t5-tiny has 384 ids for
    /// the 358 of byte+extra_ids=100), and a poorly trained model can predict such an id; each one decodes
    /// to U+FFFD, as seqio decodes ids beyond the vocabulary to its unknown token, instead of failing the run.
    /// </summary>
    internal string DecodePrediction(IReadOnlyList<int> ids)
    {
        int size = Vocabulary.Size;
        if (ids.All(id => id >= 0 && id < size)) return Vocabulary.Decode([.. ids]);
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (int id in ids)
        {
            if (id >= 0 && id < size)
            {
                run.Add(id);
                continue;
            }
            text.Append(Vocabulary.Decode([.. run])).Append('\uFFFD');
            run.Clear();
        }
        return text.Append(Vocabulary.Decode([.. run])).ToString();
    }

    /// <summary>An example's inputs text: its "inputs" text feature, else its decoded input tokens; empty when it has no inputs.</summary>
    internal string InputsText(Example example) =>
        example.Texts.TryGetValue(InputsFeature, out var text) ? text
        : example.Tokens.TryGetValue(InputsFeature, out var tokens) ? Vocabulary.Decode(tokens) : "";
}
