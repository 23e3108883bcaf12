namespace Loom.Data.Tasks;

/// <summary>
/// One example as named features (seqio's feature dictionary): text features before tokenization,
/// token features after. Immutable; preprocessors return new examples.
/// </summary>
/// <param name="Texts">Text features, e.g. "text", or "inputs" and "targets".</param>
/// <param name="Tokens">Token features, filled in by <see cref="ExamplePreprocessors.Tokenize"/>.</param>
public sealed record Example(IReadOnlyDictionary<string, string> Texts, IReadOnlyDictionary<string, int[]> Tokens)
{
    /// <summary>An example with text features only.</summary>
    public static Example FromTexts(params (string Name, string Value)[] texts) =>
        new(texts.ToDictionary(t => t.Name, t => t.Value, StringComparer.Ordinal), new Dictionary<string, int[]>(StringComparer.Ordinal));

    /// <summary>The text feature <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">The example has no such text feature; the message lists those it has.</exception>
    public string Text(string name) => Texts.TryGetValue(name, out var v) ? v
        : throw new KeyNotFoundException($"example has no text feature '{name}' (it has: {string.Join(", ", Texts.Keys)})");

    /// <summary>This example with token feature <paramref name="name"/> set.</summary>
    public Example WithTokens(string name, int[] tokens) =>
        this with { Tokens = new Dictionary<string, int[]>(Tokens, StringComparer.Ordinal) { [name] = tokens } };

    /// <summary>This example with text feature <paramref name="name"/> set.</summary>
    public Example WithText(string name, string value) =>
        this with { Texts = new Dictionary<string, string>(Texts, StringComparer.Ordinal) { [name] = value } };
}
