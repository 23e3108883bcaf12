using Loom.Data.Evaluation;

namespace Loom.Data.Tasks;

/// <summary>How a text feature becomes model input: its vocabulary and whether EOS ends it.</summary>
/// <param name="Vocabulary">Tokenizer of the feature.</param>
/// <param name="AddEos">Append the vocabulary's EOS id after tokenizing.</param>
public sealed record OutputFeature(IVocabulary Vocabulary, bool AddEos = true);

/// <summary>Where a task's raw examples come from, split by split.</summary>
public interface IDataSource
{
    /// <summary>The splits the source has, e.g. train, validation, test.</summary>
    IReadOnlyList<string> Splits { get; }

    /// <summary>
    /// Identifies the data the source reads (corpus name and version, or file paths, sizes and
    /// modification times): any change to the data changes it. Part of a task's fingerprint, which
    /// the offline cache uses to refuse stale entries.
    /// </summary>
    string Fingerprint { get; }

    /// <summary>Reads one split in a fixed order. Called lazily, each time a dataset is enumerated.</summary>
    IEnumerable<Example> Read(string split);
}

/// <summary>One step of a task's pipeline: maps, filters or expands examples.</summary>
public interface IPreprocessor
{
    /// <summary>
    /// The step's name and parameters, e.g. <c>rekey(targets=text)</c>: two steps with the same
    /// fingerprint must do the same thing. Part of a task's fingerprint.
    /// </summary>
    string Fingerprint { get; }

    /// <summary>Applies the step lazily to <paramref name="examples"/>.</summary>
    IEnumerable<Example> Apply(IEnumerable<Example> examples, PreprocessorContext context);
}

/// <summary>What a preprocessor may depend on besides the examples.</summary>
/// <param name="Split">The split being read.</param>
/// <param name="Seed">Seed for random preprocessors (combined with each example's index).</param>
/// <param name="OutputFeatures">The task's output features by name.</param>
public sealed record PreprocessorContext(string Split, ulong Seed, IReadOnlyDictionary<string, OutputFeature> OutputFeatures);

/// <summary>
/// A task as seqio describes it: a data source, preprocessors, output features (vocabulary and EOS
/// per feature) and the metrics that score it. Described as data; nothing is read until
/// <see cref="GetDataset"/> is enumerated.
/// </summary>
public sealed class DataTask
{
    /// <summary>Creates a task; the name must be a lowercase identifier (letters, digits, '_').</summary>
    public DataTask(string name, IDataSource source, IReadOnlyList<IPreprocessor> preprocessors,
        IReadOnlyDictionary<string, OutputFeature> outputFeatures, IReadOnlyList<IMetric>? metrics = null, string description = "")
    {
        Name = TaskRegistry.CheckName(name);
        Source = source ?? throw new ArgumentNullException(nameof(source));
        Preprocessors = preprocessors ?? throw new ArgumentNullException(nameof(preprocessors));
        OutputFeatures = outputFeatures ?? throw new ArgumentNullException(nameof(outputFeatures));
        if (outputFeatures.Count == 0) throw new ArgumentException($"task '{name}' needs at least one output feature (e.g. \"targets\")");
        Metrics = metrics ?? Array.Empty<IMetric>();
        Description = description;
    }

    /// <summary>The task's registry name.</summary>
    public string Name { get; }

    /// <summary>One line saying what the task is.</summary>
    public string Description { get; }

    /// <summary>The raw examples.</summary>
    public IDataSource Source { get; }

    /// <summary>The pipeline, applied in order.</summary>
    public IReadOnlyList<IPreprocessor> Preprocessors { get; }

    /// <summary>Output features by name.</summary>
    public IReadOnlyDictionary<string, OutputFeature> OutputFeatures { get; }

    /// <summary>Metrics that score predictions against targets.</summary>
    public IReadOnlyList<IMetric> Metrics { get; }

    /// <summary>
    /// What the task's examples are a function of: its name, source, preprocessors and output features
    /// (each vocabulary through <see cref="VocabularyFingerprint"/>). The offline cache records it and
    /// refuses a cache whose fingerprint differs.
    /// </summary>
    public string Fingerprint =>
        string.Join("|", [$"task={Name}", $"source={Source.Fingerprint}",
            $"steps={string.Join(",", Preprocessors.Select(p => p.Fingerprint))}",
            $"features={string.Join(",", OutputFeatures.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key}:{VocabularyFingerprint.Of(f.Value.Vocabulary)}:eos={f.Value.AddEos}"))}"]);

    /// <summary>The preprocessed examples of <paramref name="split"/>, lazily, in a fixed order.</summary>
    /// <exception cref="ArgumentException">The source has no such split; the message lists those it has.</exception>
    public IEnumerable<Example> GetDataset(string split, ulong seed = 0)
    {
        if (!Source.Splits.Contains(split))
            throw new ArgumentException($"task '{Name}' has no split '{split}' (it has: {string.Join(", ", Source.Splits)})");
        var context = new PreprocessorContext(split, seed, OutputFeatures);
        return Preprocessors.Aggregate(Source.Read(split), (examples, step) => step.Apply(examples, context));
    }
}
