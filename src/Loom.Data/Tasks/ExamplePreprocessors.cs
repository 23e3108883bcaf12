namespace Loom.Data.Tasks;

/// <summary>Common preprocessors (seqio's rekey, tokenize, filter).</summary>
public static partial class ExamplePreprocessors
{
    /// <summary>
    /// Tokenizes every text feature that has an output feature, appending EOS where it asks for it. As in
    /// seqio, an output feature the example has no text for is left alone (span corruption, for one, makes
    /// "inputs" from the tokenized "targets"), but an example with none of them is an error.
    /// </summary>
    public static IPreprocessor Tokenize { get; } = new Step("tokenize", (examples, context) => examples.Select(e =>
    {
        bool any = false;
        foreach (var (name, feature) in context.OutputFeatures)
        {
            if (!e.Texts.TryGetValue(name, out var text)) continue;
            any = true;
            int[] ids = feature.Vocabulary.Encode(text);
            e = e.WithTokens(name, feature.AddEos ? [.. ids, feature.Vocabulary.EosId] : ids);
        }
        if (!any)
            throw new KeyNotFoundException(
                $"example has none of the output features {string.Join(", ", context.OutputFeatures.Keys)} as text (it has: {string.Join(", ", e.Texts.Keys)})");
        return e;
    }));

    /// <summary>Renames text features: each output name takes the value of its source name; other features are dropped.</summary>
    public static IPreprocessor Rekey(IReadOnlyDictionary<string, string> outputToSource)
    {
        ArgumentNullException.ThrowIfNull(outputToSource);
        string fingerprint = $"rekey({string.Join(",", outputToSource.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => $"{m.Key}={m.Value}"))})";
        return new Step(fingerprint, (examples, _) => examples.Select(e =>
            e with { Texts = outputToSource.ToDictionary(m => m.Key, m => e.Text(m.Value), StringComparer.Ordinal) }));
    }

    /// <summary>Keeps the examples for which <paramref name="keep"/> is true.</summary>
    /// <param name="name">
    /// Says what the filter keeps, e.g. <c>min_length_100</c>; it stands for the predicate in the task's
    /// fingerprint, so change it whenever the predicate changes.
    /// </param>
    /// <param name="keep">The predicate.</param>
    public static IPreprocessor Filter(string name, Func<Example, bool> keep)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(keep);
        return new Step($"filter({name})", (examples, _) => examples.Where(keep));
    }

    private sealed class Step(string fingerprint, Func<IEnumerable<Example>, PreprocessorContext, IEnumerable<Example>> apply) : IPreprocessor
    {
        public string Fingerprint => fingerprint;

        public IEnumerable<Example> Apply(IEnumerable<Example> examples, PreprocessorContext context) => apply(examples, context);
    }
}
