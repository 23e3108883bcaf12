using Loom.Data.Sources;

namespace Loom.Data.Tasks;

/// <summary>A source over a <see cref="TextCorpus"/> loaded on first read: one example per document, feature "text".</summary>
public sealed class TextCorpusSource : IDataSource
{
    private readonly Lazy<TextCorpus> corpus;
    private readonly Func<string> fingerprint;

    /// <summary>Creates the source; <paramref name="load"/> runs once, when a split is first read.</summary>
    /// <param name="fingerprint">Computes <see cref="Fingerprint"/> (see <see cref="IDataSource.Fingerprint"/>), e.g. from the files read.</param>
    /// <param name="load">Loads the corpus.</param>
    public TextCorpusSource(Func<string> fingerprint, Func<TextCorpus> load)
    {
        this.fingerprint = fingerprint ?? throw new ArgumentNullException(nameof(fingerprint));
        corpus = new Lazy<TextCorpus>(load ?? throw new ArgumentNullException(nameof(load)));
    }

    /// <inheritdoc />
    public string Fingerprint => fingerprint();

    /// <inheritdoc />
    public IReadOnlyList<string> Splits { get; } = ["train", "validation"];

    /// <inheritdoc />
    public IEnumerable<Example> Read(string split) =>
        (split == "train" ? corpus.Value.Train : corpus.Value.Validation).Select(d => Example.FromTexts(("text", d)));
}

/// <summary>A source over a <see cref="LabeledCorpus"/> loaded on first read: features "text", "label" and "id".</summary>
public sealed class LabeledCorpusSource : IDataSource
{
    private readonly Lazy<LabeledCorpus> corpus;

    /// <summary>Creates the source; <paramref name="load"/> runs once, when a split is first read.</summary>
    /// <param name="fingerprint">The source's <see cref="Fingerprint"/> (see <see cref="IDataSource.Fingerprint"/>).</param>
    /// <param name="load">Loads the corpus.</param>
    public LabeledCorpusSource(string fingerprint, Func<LabeledCorpus> load)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(fingerprint);
        Fingerprint = fingerprint;
        corpus = new Lazy<LabeledCorpus>(load ?? throw new ArgumentNullException(nameof(load)));
    }

    /// <inheritdoc />
    public string Fingerprint { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> Splits { get; } = ["train", "validation", "test"];

    /// <inheritdoc />
    public IEnumerable<Example> Read(string split)
    {
        var c = corpus.Value;
        var examples = split switch { "train" => c.Train, "validation" => c.Validation, _ => c.Test };
        return examples.Select(e => Example.FromTexts(("text", e.Text), ("label", e.Label), ("id", e.Id)));
    }
}

/// <summary>
/// A source over an <see cref="ImageDataset"/> loaded on first read: token feature "inputs" holds the
/// pixels row by row (one id per greyscale value, 0..255), text feature "targets" the class name.
/// </summary>
public sealed class ImageClassificationSource : IDataSource
{
    private readonly Lazy<ImageDataset> dataset;

    /// <summary>Creates the source; <paramref name="load"/> runs once, when a split is first read.</summary>
    /// <param name="fingerprint">The source's <see cref="Fingerprint"/> (see <see cref="IDataSource.Fingerprint"/>).</param>
    /// <param name="load">Loads the dataset.</param>
    public ImageClassificationSource(string fingerprint, Func<ImageDataset> load)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(fingerprint);
        Fingerprint = fingerprint;
        dataset = new Lazy<ImageDataset>(load ?? throw new ArgumentNullException(nameof(load)));
    }

    /// <inheritdoc />
    public string Fingerprint { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> Splits { get; } = ["train", "validation", "test"];

    /// <summary>The images themselves (loaded on first use), for models that take pixels rather than tokens.</summary>
    public ImageDataset Dataset => dataset.Value;

    /// <inheritdoc />
    public IEnumerable<Example> Read(string split)
    {
        var d = dataset.Value;
        var images = split switch { "train" => d.Train, "validation" => d.Validation, _ => d.Test };
        return images.Select(image => new Example(
            new Dictionary<string, string>(StringComparer.Ordinal) { ["targets"] = d.ClassNames[image.Label] },
            new Dictionary<string, int[]>(StringComparer.Ordinal) { ["inputs"] = [.. image.Pixels.Select(p => (int)p)] }));
    }
}
