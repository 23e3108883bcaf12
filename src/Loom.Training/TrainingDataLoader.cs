using System.Globalization;
using System.Text;
using Loom.Data;

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
        TextCorpus corpus = data.Task is { } task
            ? FromTask(task, progress)
            : string.IsNullOrWhiteSpace(data.Path)
                ? AustenCorpus.Load(progress: progress)
                : TextFiles.Load(data.Path, data.ValidationFraction);
        if (evaluateAll) corpus = corpus with { Validation = corpus.Train.Concat(corpus.Validation).ToList() };

        var vocabulary = Vocabularies.Create(data.Vocabulary);
        string vocabularySpec = Vocabularies.ModelFile(data.Vocabulary) is { } file
            ? Vocabularies.WithModelFile(data.Vocabulary, Path.GetFullPath(file))
            : data.Vocabulary;
        var train = TokenStream.Encode(corpus.Train, vocabulary);
        var validation = TokenStream.Encode(corpus.Validation, vocabulary);
        ulong seed = unchecked((ulong)training.Seed);
        var trainBatcher = new LmBatcher(train, data.SequenceLength, training.BatchSize, seed);
        var validationBatcher = new LmBatcher(validation, data.SequenceLength, training.BatchSize, seed);

        long validationBytes = corpus.Validation.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
        double bytesPerToken = validationBytes / (double)Math.Max(1, validation.Length);
        string description = string.Create(CultureInfo.InvariantCulture,
            $"{corpus.Name}: {train.Length:N0} training tokens in {corpus.Train.Count} documents, {validation.Length:N0} held-out tokens ({vocabulary.Name} vocabulary)");
        return new TrainingData(vocabulary, vocabularySpec, trainBatcher, validationBatcher, bytesPerToken, corpus.Name, description);
    }

    /// <summary>The "targets" text of a registered task's train and validation splits.</summary>
    private static TextCorpus FromTask(string name, IProgress<string>? progress)
    {
        // The registry's vocabulary is irrelevant here: only the text features are read.
        var vocabulary = new ByteVocabulary();
        var task = Loom.Data.Tasks.TaskRegistry.Find(Loom.Data.Tasks.TaskRegistry.WithBuiltIns(vocabulary, progress: progress), name, vocabulary);
        if (!task.OutputFeatures.ContainsKey("targets") || task.OutputFeatures.Count != 1)
            throw new ArgumentException($"task '{name}' is not a language-modelling task (its features are {string.Join(", ", task.OutputFeatures.Keys)}); train on austen, kjv or moby_dick");
        IReadOnlyList<string> Texts(string split) => [.. task.Source.Read(split).Select(e => e.Text("text"))];
        return new TextCorpus(task.Name, Texts("train"), Texts("validation"));
    }
}
