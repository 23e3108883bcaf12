using System.Globalization;
using System.Text;
using Loom.Data;
using Loom.Data.Caching;
using Loom.Data.FeatureConverters;
using Loom.Data.Tasks;
using Loom.Training.DataParallelism;

namespace Loom.Training;

/// <summary>Turns <see cref="DataOptions"/> into a run's vocabulary and batch sources.</summary>
public static class TrainingDataLoader
{
    /// <summary>
    /// Loads the data of a run: the built-in Austen novels (fetched and cached at first use), the text
    /// at data.path, a task (data.task) or a mixture (data.mixture), encodes it and builds the batches.
    /// </summary>
    /// <param name="data">Data options.</param>
    /// <param name="training">Supplies the batch size and the seed of the batch order.</param>
    /// <param name="progress">Receives progress lines while a corpus is fetched.</param>
    /// <param name="evaluateAll">Treat all of data.path as held-out text (for <c>loom eval --data</c>).</param>
    /// <param name="registry">
    /// The tasks and mixtures to look names up in; null for the built-ins plus the task folders of
    /// <paramref name="data"/> (<see cref="TaskRegistry.WithBuiltInsAndFolders"/>). Pass one to train on tasks defined in C#.
    /// </param>
    /// <param name="layout">
    /// The model family's features: decoder-only (LM streams, or inputs ++ targets rows) or encoder-decoder
    /// (inputs to the encoder, targets to the decoder; tasks with inputs only).
    /// </param>
    /// <param name="shard">
    /// This process's data-parallel rank: its training batches hold batch_size / world size rows of every
    /// global batch (<see cref="DataShard"/>); null for one process. Held-out data is not sharded.
    /// </param>
    /// <exception cref="CorpusUnavailableException">The built-in corpus cannot be fetched.</exception>
    /// <exception cref="FileNotFoundException">data.path does not exist.</exception>
    /// <exception cref="StaleCacheException">data.use_cache is set and a task's cache is missing or stale.</exception>
    public static TrainingData Load(DataOptions data, TrainerOptions training, IProgress<string>? progress = null, bool evaluateAll = false,
        TaskRegistry? registry = null, FeatureLayout layout = FeatureLayout.Decoder, DataShard? shard = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(training);
        var vocabulary = Vocabularies.Create(data.Vocabulary);
        string vocabularySpec = Vocabularies.ModelFile(data.Vocabulary) is { } file
            ? Vocabularies.WithModelFile(data.Vocabulary, Path.GetFullPath(file))
            : data.Vocabulary;
        shard ??= DataShard.Single;
        var run = new Run(data, training, vocabulary, vocabularySpec, layout, shard, shard.RowsPerRank(training.BatchSize));
        if (layout == FeatureLayout.Image && (data.Task is null || data.Mixture is not null))
            throw new ArgumentException("model.architecture = image_classifier trains on an image task: pass --task fashion_mnist (not a corpus, text file or mixture)");
        if (data.Task is null && data.Mixture is null)
        {
            if (layout == FeatureLayout.EncoderDecoder) throw NeedsInputs(data.Path ?? data.Corpus);
            var corpus = string.IsNullOrWhiteSpace(data.Path) ? AustenCorpus.Load(progress: progress) : TextFiles.Load(data.Path, data.ValidationFraction);
            return run.Stream(FromCorpus(corpus, vocabulary, evaluateAll));
        }
        registry ??= TaskRegistry.WithBuiltInsAndFolders(vocabulary, data.TaskDirs, progress: progress);
        if (data.Mixture is { } mixture) return run.Mixture(registry, mixture);

        var task = TaskRegistry.Find(registry, data.Task!, vocabulary);
        if (layout == FeatureLayout.Image) return run.Images(task);
        if (layout == FeatureLayout.ImageText) return run.ImageText(task);
        bool languageModelling = task.OutputFeatures.Count == 1 && task.OutputFeatures.ContainsKey("targets");
        if (languageModelling && layout == FeatureLayout.EncoderDecoder) throw NeedsInputs(task.Name);
        return languageModelling ? run.Stream(FromTask(task, run.Split(task, "train"), run.Split(task, "validation"), evaluateAll)) : run.Packed(task);
    }

    private static ArgumentException NeedsInputs(string name) =>
        new($"'{name}' is one stream of text, but an encoder-decoder model trains on examples with inputs and targets: pick a task with inputs (e.g. a span-corruption task such as --task austen_span_corruption) or a decoder-only model");

    /// <summary>What every data path needs: the options, the vocabulary, the model's features and how to read a task's split.</summary>
    private sealed record Run(DataOptions Data, TrainerOptions Training, IVocabulary Vocabulary, string VocabularySpec, FeatureLayout Layout,
        DataShard Shard, int RowsPerRank)
    {
        private ulong Seed => unchecked((ulong)Training.Seed);

        /// <summary>A task's split: from the offline cache when data.use_cache is set, else through its pipeline.</summary>
        public IReadOnlyList<Example> Split(DataTask task, string split) =>
            Data.UseCache ? CachedSplit.Open(task, split, Data.CacheDir) : task.GetDataset(split).ToList();

        /// <summary>One token stream of documents: LM batches of T + 1 consecutive tokens.</summary>
        public TrainingData Stream(Documents documents)
        {
            var train = Concatenate(documents.Train);
            var validation = Concatenate(documents.Validation);
            var trainBatches = new LmBatcher(train, Data.SequenceLength, RowsPerRank, Seed, Shard.Rank, Shard.WorldSize);
            var validationBatches = new LmBatcher(validation, Data.SequenceLength, Training.BatchSize, Seed);
            double bytesPerToken = documents.ValidationBytes / (double)Math.Max(1, validation.Length);
            string description = string.Create(CultureInfo.InvariantCulture,
                $"{documents.Name}: {train.Length:N0} training tokens in {documents.Train.Count} documents, {validation.Length:N0} held-out tokens ({Vocabulary.Name} vocabulary{(Data.UseCache ? ", from the cache" : "")})");
            return new TrainingData(Vocabulary, VocabularySpec, trainBatches, validationBatches, bytesPerToken, documents.Name, description);
        }

        /// <summary>An image task for an image model: batches of pixels and class ids; held out, the validation images.</summary>
        public TrainingData Images(DataTask task)
        {
            if (task.Source is not ImageClassificationSource source)
                throw new ArgumentException($"model.architecture = image_classifier trains on images, but task '{task.Name}' is not an image task: pick one such as --task fashion_mnist");
            var d = source.Dataset;
            var train = new Loom.Data.Images.ImageBatcher(d.Train, d.Rows, d.Columns, RowsPerRank, Seed, Shard.Rank, Shard.WorldSize);
            var validation = new Loom.Data.Images.ImageBatcher(d.Validation, d.Rows, d.Columns, Training.BatchSize, Seed);
            string description = string.Create(CultureInfo.InvariantCulture,
                $"{task.Name}: {d.Train.Count:N0} training and {d.Validation.Count:N0} validation images of {d.Rows}x{d.Columns} pixels, {d.ClassNames.Count} classes");
            return new TrainingData(Vocabulary, VocabularySpec, train, null, 0, task.Name, description) { ValidationImages = validation, Layout = Layout };
        }

        /// <summary>An image + text task: one example per row with its image, loss on the targets; held-out loss on its validation split.</summary>
        public TrainingData ImageText(DataTask task)
        {
            if (!task.Source.Splits.Contains("validation"))
                throw new ArgumentException($"task '{task.Name}' has no validation split (it has: {string.Join(", ", task.Source.Splits)}), which the trainer evaluates on");
            var train = Split(task, "train");
            var validation = Split(task, "validation");
            int pixels = train.Count == 0 || !train[0].Tokens.TryGetValue(Loom.Data.ImageText.ImagePrompts.ImageFeature, out var image)
                ? throw new ArgumentException($"task '{task.Name}' has no \"{Loom.Data.ImageText.ImagePrompts.ImageFeature}\" feature: an image + text model trains on a task with images (e.g. fashion_mnist_captions)")
                : image.Length;
            int side = (int)Math.Round(Math.Sqrt(pixels));
            if (side * side != pixels) throw new ArgumentException($"task '{task.Name}': images of {pixels} pixels are not square");
            var batches = new Loom.Data.ImageText.ImageTextBatches(train, Vocabulary.PadId, Data.SequenceLength, RowsPerRank, side, side, Seed, Shard.Rank, Shard.WorldSize);
            var held = new Loom.Data.ImageText.ImageTextBatches(validation, Vocabulary.PadId, Data.SequenceLength, Training.BatchSize, side, side, Seed, shuffle: false);
            string description = string.Create(CultureInfo.InvariantCulture,
                $"{task.Name}: {train.Count:N0} training and {validation.Count:N0} held-out image + text examples ({side}x{side} images, {Vocabulary.Name} vocabulary)");
            return new TrainingData(Vocabulary, VocabularySpec, batches, null, 0, task.Name, description) { ImageTextValidation = held, Layout = Layout };
        }

        /// <summary>A task with inputs and targets: packed rows, loss on the targets; scored per task.</summary>
        public TrainingData Packed(DataTask task) => Mixed(task.Name, [task], [1.0]);

        /// <summary>A mixture: every task's examples packed, rows sampled by the mixture's rates.</summary>
        public TrainingData Mixture(TaskRegistry registry, string name)
        {
            var tasks = registry.TasksOf(name).Select(registry.GetTask).ToList();
            var train = tasks.ToDictionary(t => t.Name, t => Split(t, "train"), StringComparer.Ordinal);
            var rates = registry.TaskRates(name, t => TaskStatistics.Count(train[t]));
            var kept = tasks.Where(t => rates.ContainsKey(t.Name)).ToList();
            return Mixed(name, kept, [.. kept.Select(t => rates[t.Name])], train);
        }

        private TrainingData Mixed(string name, IReadOnlyList<DataTask> tasks, IReadOnlyList<double> rates, Dictionary<string, IReadOnlyList<Example>>? train = null)
        {
            var components = tasks.Select((t, i) => new PackedComponent(t.Name, train?[t.Name] ?? Split(t, "train"), rates[i])).ToList();
            foreach (var t in tasks)
                if (!t.Source.Splits.Contains("validation"))
                    throw new ArgumentException($"task '{t.Name}' has no validation split (it has: {string.Join(", ", t.Source.Splits)}), which the trainer evaluates on");
            var batches = new PackedTrainingBatches(components, Vocabulary, Data.SequenceLength, RowsPerRank, Seed, Shard.Rank, Shard.WorldSize, Layout);
            string parts = string.Join(", ", components.Select((c, i) => string.Create(CultureInfo.InvariantCulture,
                $"{c.Name} {c.Examples.Count:N0} examples at rate {rates[i]:0.###}, packing {batches.PackingEfficiency(i):P0}")));
            string description = $"{name}: {parts} ({Vocabulary.Name} vocabulary{(Data.UseCache ? ", from the cache" : "")})";
            return new TrainingData(Vocabulary, VocabularySpec, batches, null, 0, name, description) { ValidationTasks = tasks, Layout = Layout };
        }
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
    /// A language-modelling task's "targets" through its own pipeline (so its filters and rekeys apply)
    /// or its cache; held-out bytes are those of the decoded targets, which a cache keeps no text for.
    /// </summary>
    private static Documents FromTask(DataTask task, IReadOnlyList<Example> train, IReadOnlyList<Example> validationSplit, bool evaluateAll)
    {
        var validation = evaluateAll ? [.. train, .. validationSplit] : validationSplit;
        var vocabulary = task.OutputFeatures["targets"].Vocabulary;
        int[][] held = [.. validation.Select(e => e.Tokens["targets"])];
        return new Documents(task.Name, [.. train.Select(e => e.Tokens["targets"])], held,
            held.Sum(t => (long)Encoding.UTF8.GetByteCount(vocabulary.Decode(t))));
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
