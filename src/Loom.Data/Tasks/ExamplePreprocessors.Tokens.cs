using System.Globalization;
using Loom.Data.Preprocessors;
using SpanCorruptionNoise = Loom.Data.Preprocessors.SpanCorruption;

namespace Loom.Data.Tasks;

/// <summary>Steps over token features, run after <see cref="Tokenize"/> (seqio's token-level preprocessors).</summary>
public static partial class ExamplePreprocessors
{
    /// <summary>Keeps the first <paramref name="maxLength"/> tokens of token feature <paramref name="feature"/>.</summary>
    /// <param name="feature">The token feature, e.g. "targets".</param>
    /// <param name="maxLength">The most tokens to keep, at least 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> is negative.</exception>
    public static IPreprocessor Truncate(string feature, int maxLength)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(feature);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        return new Step(Invariant($"truncate({feature},max_length={maxLength})"), (examples, _) => examples.Select(e =>
            e.WithTokens(feature, TokenPreprocessors.Truncate(TokensOf(e, feature), maxLength))));
    }

    /// <summary>
    /// Appends EOS to token feature <paramref name="feature"/>: the EOS id of the output feature's
    /// vocabulary, the one <see cref="Tokenize"/> appends when the output feature says
    /// <see cref="OutputFeature.AddEos"/>. Meant for token features made after tokenizing (span
    /// corruption, document chunks) or tokenized with <c>AddEos = false</c>; on a feature that
    /// <see cref="Tokenize"/> already ended with EOS it appends a second one.
    /// </summary>
    /// <param name="feature">The token feature; the task must have an output feature of that name.</param>
    /// <exception cref="ArgumentException">When applied: the task has no output feature <paramref name="feature"/>.</exception>
    public static IPreprocessor AppendEos(string feature)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(feature);
        return new Step($"append_eos({feature})", (examples, context) =>
        {
            if (!context.OutputFeatures.TryGetValue(feature, out var output))
                throw new ArgumentException(
                    $"append_eos({feature}) needs an output feature '{feature}' for its vocabulary's EOS id (the task has: {string.Join(", ", context.OutputFeatures.Keys)})");
            int eosId = output.Vocabulary.EosId;
            return examples.Select(e => e.WithTokens(feature, TokenPreprocessors.AppendEos(TokensOf(e, feature), eosId)));
        });
    }

    /// <summary>
    /// T5's span corruption: reads token feature "targets" (the tokenized text, T5's convention) and
    /// writes "inputs" (the text with each noise span replaced by a sentinel) and "targets" (each
    /// sentinel followed by the span it replaced), by <see cref="SpanCorruptionNoise.Apply"/> with the
    /// context's seed and the example's index in the split (counting the examples that reach this step).
    /// </summary>
    /// <param name="options">Noise density and mean span length.</param>
    /// <param name="sentinelName">
    /// Names the sentinel mapping in the task's fingerprint; change it whenever the mapping changes.
    /// </param>
    /// <param name="sentinel">Maps a sentinel number k (0, 1, ...) to its id.</param>
    public static IPreprocessor SpanCorruption(SpanCorruptionOptions options, string sentinelName, Func<int, int> sentinel)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(sentinelName);
        ArgumentNullException.ThrowIfNull(sentinel);
        string fingerprint = Invariant(
            $"span_corruption(noise_density={options.NoiseDensity:R},mean_noise_span_length={options.MeanNoiseSpanLength:R},sentinels={sentinelName})");
        return new Step(fingerprint, (examples, context) => examples.Select((e, index) =>
        {
            var (inputs, targets) = SpanCorruptionNoise.Apply(TokensOf(e, "targets"), options, context.Seed, index, sentinel);
            return e.WithTokens("inputs", inputs).WithTokens("targets", targets);
        }));
    }

    /// <summary>
    /// T5's span corruption with the sentinels of <paramref name="vocabulary"/> (<c>&lt;extra_id_k&gt;</c>
    /// has id <see cref="ExtraIdsVocabulary.SentinelId"/>(k)); see the other overload.
    /// </summary>
    /// <param name="options">Noise density and mean span length.</param>
    /// <param name="vocabulary">The vocabulary whose extra ids are the sentinels; its fingerprint names them.</param>
    public static IPreprocessor SpanCorruption(SpanCorruptionOptions options, ExtraIdsVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return SpanCorruption(options, $"extra_ids:{VocabularyFingerprint.Of(vocabulary)}", vocabulary.SentinelId);
    }

    /// <summary>
    /// T5's prefix-LM objective: splits token feature "targets" into "inputs" (a prefix) and "targets"
    /// (the rest) at a random point, by <see cref="PrefixLmSplit.Apply"/> with the context's seed and the
    /// example's index in the split (counting the examples that reach this step).
    /// </summary>
    public static IPreprocessor PrefixLm() => PrefixLmStep;

    /// <summary>
    /// Document concatenation for language modelling (seqio's <c>reduce_concat_tokens</c> followed by
    /// <c>split_tokens</c>): concatenates token feature <paramref name="feature"/> of consecutive examples
    /// and cuts the stream into examples of exactly <paramref name="length"/> tokens, the last one
    /// shorter if tokens are left over. Each output example holds that token feature only. Unlike seqio,
    /// which concatenates groups of 128 examples, the whole split is one stream, so only the final
    /// chunk may be short.
    /// </summary>
    /// <param name="feature">The token feature, e.g. "targets"; end the documents with EOS to keep them apart.</param>
    /// <param name="length">Tokens per output example, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive.</exception>
    public static IPreprocessor ConcatenateDocuments(string feature, int length)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(feature);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        return new Step(Invariant($"concatenate_documents({feature},length={length})"), (examples, _) => Chunks(examples, feature, length));
    }

    private static readonly IPreprocessor PrefixLmStep = new Step("prefix_lm", (examples, context) => examples.Select((e, index) =>
    {
        var (inputs, targets) = PrefixLmSplit.Apply(TokensOf(e, "targets"), context.Seed, index);
        return e.WithTokens("inputs", inputs).WithTokens("targets", targets);
    }));

    private static IEnumerable<Example> Chunks(IEnumerable<Example> examples, string feature, int length)
    {
        var chunk = new List<int>(length);
        foreach (var example in examples)
        {
            foreach (int id in TokensOf(example, feature))
            {
                chunk.Add(id);
                if (chunk.Count < length) continue;
                yield return Chunk(feature, chunk);
                chunk.Clear();
            }
        }
        if (chunk.Count > 0) yield return Chunk(feature, chunk);
    }

    private static Example Chunk(string feature, List<int> tokens) => new(
        new Dictionary<string, string>(StringComparer.Ordinal),
        new Dictionary<string, int[]>(StringComparer.Ordinal) { [feature] = [.. tokens] });

    /// <summary>Token feature <paramref name="name"/> of <paramref name="example"/>.</summary>
    /// <exception cref="KeyNotFoundException">The example has no such token feature; the message lists those it has.</exception>
    private static int[] TokensOf(Example example, string name) => example.Tokens.TryGetValue(name, out var tokens) ? tokens
        : throw new KeyNotFoundException(
            $"example has no token feature '{name}' (it has: {string.Join(", ", example.Tokens.Keys)}); tokenize it first");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
