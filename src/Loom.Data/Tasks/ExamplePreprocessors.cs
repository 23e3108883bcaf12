namespace Loom.Data.Tasks;

/// <summary>Common preprocessors (seqio's rekey, tokenize, filter).</summary>
public static class ExamplePreprocessors
{
    /// <summary>Tokenizes every text feature that has an output feature, appending EOS where it asks for it.</summary>
    public static IPreprocessor Tokenize { get; } = new Step((examples, context) => examples.Select(e =>
    {
        foreach (var (name, feature) in context.OutputFeatures)
        {
            int[] ids = feature.Vocabulary.Encode(e.Text(name));
            e = e.WithTokens(name, feature.AddEos ? [.. ids, feature.Vocabulary.EosId] : ids);
        }
        return e;
    }));

    /// <summary>Renames text features: each output name takes the value of its source name; other features are dropped.</summary>
    public static IPreprocessor Rekey(IReadOnlyDictionary<string, string> outputToSource)
    {
        ArgumentNullException.ThrowIfNull(outputToSource);
        return new Step((examples, _) => examples.Select(e =>
            e with { Texts = outputToSource.ToDictionary(m => m.Key, m => e.Text(m.Value), StringComparer.Ordinal) }));
    }

    /// <summary>Keeps the examples for which <paramref name="keep"/> is true.</summary>
    public static IPreprocessor Filter(Func<Example, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        return new Step((examples, _) => examples.Where(keep));
    }

    private sealed class Step(Func<IEnumerable<Example>, PreprocessorContext, IEnumerable<Example>> apply) : IPreprocessor
    {
        public IEnumerable<Example> Apply(IEnumerable<Example> examples, PreprocessorContext context) => apply(examples, context);
    }
}
