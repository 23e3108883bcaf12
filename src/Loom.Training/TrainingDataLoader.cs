using System.Globalization;
using System.Text;
using Loom.Data;
using Loom.Data.Tasks;

namespace Loom.Training;

/// <summary>Turns <see cref="DataOptions"/> into a run's vocabulary and batch sources.</summary>
public static class TrainingDataLoader
{
    /// <summary>
    /// Loads the corpus (the built-in Austen novels, fetched and cached at first use, or the text at
    /// data.path), encodes it and builds the batchers.
    /// </summary>
    /// <param name="data">Data options.</param>
    /// <param name="training">Supplies the batch size and the seed of the batch order.</param>
    /// <param name="progress">Receives progress lines while a corpus is fetched.</param>
    /// <param name="evaluateAll">Treat all of data.path as held-out text (for <c>loom eval --data</c>).</param>
    /// <exception cref="CorpusUnavailableException">The built-in corpus cannot be fetched.</exception>
    /// <exception cref="FileNotFoundException">data.path does not exist.</exception>
    public static TrainingData Load(DataOptions data, TrainerOptions training, IProgress<string>? progress = null, bool evaluateAll = false)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(training);
        var vocabulary = Vocabularies.Create(data.Vocabulary);
        string vocabularySpec = Vocabularies.ModelFile(data.Vocabulary) is { } file
            ? Vocabularies.WithModelFile(data.Vocabulary, Path.GetFullPath(file))
            : data.Vocabulary;
        var documents = data.Task is { } task
            ? FromTask(task, vocabulary, progress, evaluateAll)
            : FromCorpus(string.IsNullOrWhiteSpace(data.Path) ? AustenCorpus.Load(progress: progress) : TextFiles.Load(data.Path, data.ValidationFraction),
                vocabulary, evaluateAll);
        var train = Concatenate(documents.Train);
        var validation = Concatenate(documents.Validation);
        ulong seed = unchecked((ulong)training.Seed);
        var trainBatcher = new LmBatcher(train, data.SequenceLength, training.BatchSize, seed);
        var validationBatcher = new LmBatcher(validation, data.SequenceLength, training.BatchSize, seed);

        double bytesPerToken = documents.ValidationBytes / (double)Math.Max(1, validation.Length);
        string description = string.Create(CultureInfo.InvariantCulture,
            $"{documents.Name}: {train.Length:N0} training tokens in {documents.Train.Count} documents, {validation.Length:N0} held-out tokens ({vocabulary.Name} vocabulary)");
        return new TrainingData(vocabulary, vocabularySpec, trainBatcher, validationBatcher, bytesPerToken, documents.Name, description);
    }

    /// <summary>Documents as token arrays, each ending with EOS, and the UTF-8 size of the held-out text.</summary>
    private sealed record Documents(string Name, IReadOnlyList<int[]> Train, IReadOnlyList<int[]> Validation, long ValidationBytes);

    private static Documents FromCorpus(TextCorpus corpus, IVocabulary vocabulary, bool evaluateAll)
    {
        var validation = evaluateAll ? [.. corpus.Train, .. corpus.Validation] : corpus.Validation;
        int[] Encode(string text) => [.. vocabulary.Encode(text), vocabulary.EosId];
        return new Documents(corpus.Name, [.. corpus.Train.Select(Encode)], [.. validation.Select(Encode)],
            validation.Sum(d => (long)Encoding.UTF8.GetByteCount(d)));
    }

    /// <summary>
    /// A language-modelling task's "targets" through its own pipeline (so its filters and rekeys
    /// apply), tokenized there with the run's vocabulary.
    /// </summary>
    private static Documents FromTask(string name, IVocabulary vocabulary, IProgress<string>? progress, bool evaluateAll)
    {
        var task = TaskRegistry.Find(TaskRegistry.WithBuiltIns(vocabulary, progress: progress), name, vocabulary);
        if (!task.OutputFeatures.ContainsKey("targets") || task.OutputFeatures.Count != 1)
            throw new ArgumentException($"task '{name}' is not a language-modelling task (its features are {string.Join(", ", task.OutputFeatures.Keys)}); train on austen, kjv or moby_dick");
        var train = task.GetDataset("train").ToList();
        var validation = evaluateAll ? [.. train, .. task.GetDataset("validation")] : task.GetDataset("validation").ToList();
        return new Documents(task.Name, [.. train.Select(e => e.Tokens["targets"])], [.. validation.Select(e => e.Tokens["targets"])],
            validation.Sum(e => (long)Encoding.UTF8.GetByteCount(e.Text("targets"))));
    }

    private static TokenStream Concatenate(IReadOnlyList<int[]> documents)
    {
        var all = new int[documents.Sum(d => d.Length)];
        int at = 0;
        foreach (var d in documents)
        {
            d.CopyTo(all, at);
            at += d.Length;
        }
        return new TokenStream(all);
    }
}
