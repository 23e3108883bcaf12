using System.Globalization;
using System.Text;
using Loom.Data.Evaluation;

namespace Loom.Data.Tasks;

/// <summary>
/// One needle-in-a-haystack example (Gemini 1.5's retrieval test): filler text with a key-value fact
/// ("the secret code of 4821 is #CKS. ") hidden at a chosen depth, then a question that asks for it.
/// The text is ASCII, so with the byte vocabulary every character is one token.
/// </summary>
/// <param name="Inputs">The haystack with the needle, then the question (the prompt); it ends just before the answer.</param>
/// <param name="Targets">The answer: exactly <paramref name="Value"/>.</param>
/// <param name="Key">The needle's key, four digits (no digits elsewhere in the text).</param>
/// <param name="Value">The needle's value, three capital letters (no capitals elsewhere in the text).</param>
/// <param name="NeedleOffset">The character (byte token) at which the needle sentence starts in <paramref name="Inputs"/>.</param>
/// <param name="Length">Tokens of the whole example as a model reads it: inputs, targets and the EOS that ends the targets.</param>
/// <param name="Depth">The requested depth: 0 puts the needle first, 1 right before the question.</param>
public sealed record NeedleExample(string Inputs, string Targets, string Key, string Value, int NeedleOffset, int Length, double Depth)
{
    /// <summary>The example as a task example: text features "inputs" and "targets".</summary>
    public Example ToExample() => Example.FromTexts(("inputs", Inputs), ("targets", Targets));
}

/// <summary>
/// Generates needle-in-a-haystack examples, each a pure function of (seed, index, length, depth).
/// </summary>
/// <remarks>
/// The filler is a stream of generated sentences in lowercase words (no digits, no capitals), varied
/// by the example's draws, and the needle and the question are lowercase too, so the key's digits and the
/// value's capitals are the only ones in the text. The needle is inserted into that stream at character
/// <c>round(depth · F)</c>, where F is the filler's length, which may split a filler word. The value's i-th
/// letter comes from its own eighth of the alphabet (A–H, I–P, Q–X), so each answer token is found by one
/// attention hop to the one token of its letter range in the context, however far back: the test is whether
/// attention reaches across the context, as Gemini 1.5's is. (A first design, five distinct digits copied by
/// induction heads, asked two hops of a tiny model and did not train within the CPU budget: bench/RESULTS.md.)
/// With one needle per haystack (as in Gemini 1.5's test) the key names the fact but is not needed to find it.
/// </remarks>
public static class NeedleHaystack
{
    /// <summary>The letter range each position of the value draws from.</summary>
    private static readonly string[] ValueAlphabets = ["ABCDEFGH", "IJKLMNOP", "QRSTUVWX"];

    /// <summary>Letters in every value.</summary>
    public static int ValueLetters => ValueAlphabets.Length;

    /// <summary>Digits in every key.</summary>
    public const int KeyDigits = 4;

    /// <summary>The shortest example that holds the needle, the question and the answer (with EOS), in tokens.</summary>
    public static int MinimumLength => Needle("4821", "CKS").Length + Question("4821").Length + ValueLetters + 1;

    /// <summary>The needle sentence for a key and value.</summary>
    public static string Needle(string key, string value) => $"the secret code of {key} is #{value}. ";

    /// <summary>The question that ends the prompt; the answer (the value) follows it directly.</summary>
    public static string Question(string key) => $"q: what is the secret code of {key}? a: the secret code of {key} is #";

    /// <summary>
    /// The example of (<paramref name="seed"/>, <paramref name="index"/>) with <paramref name="length"/> tokens
    /// and the needle at <paramref name="depth"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The depth is outside [0, 1] or the length cannot hold the needle, question and answer.</exception>
    public static NeedleExample Generate(ulong seed, long index, int length, double depth)
    {
        CheckDepth(depth);
        CheckLength(length);
        ulong key = CounterRng.Key(seed, 0x6E6565646C65 /* "needle" */, (ulong)index);
        ulong draw = 0;
        int Next(int bound) => (int)CounterRng.Below(key, draw++, (ulong)bound);
        var name = new StringBuilder(KeyDigits);
        for (int i = 0; i < KeyDigits; i++) name.Append((char)('0' + (i == 0 ? 1 + Next(9) : Next(10))));
        var value = new StringBuilder(ValueLetters);
        foreach (string alphabet in ValueAlphabets) value.Append(alphabet[Next(alphabet.Length)]);
        string k = name.ToString(), v = value.ToString();
        string needle = Needle(k, v), question = Question(k);
        int filler = length - needle.Length - question.Length - v.Length - 1; // F: characters of filler
        string stream = Filler(filler, Next);
        int offset = (int)Math.Round(depth * filler, MidpointRounding.AwayFromZero);
        string inputs = string.Concat(stream.AsSpan(0, offset), needle, stream.AsSpan(offset), question);
        return new NeedleExample(inputs, v, k, v, offset, length, depth);
    }

    /// <summary>Throws a one-line error unless <paramref name="depth"/> is in [0, 1].</summary>
    public static void CheckDepth(double depth)
    {
        if (!(depth >= 0 && depth <= 1))
            throw new ArgumentOutOfRangeException(nameof(depth), depth, $"needle: depth = {depth.ToString(CultureInfo.InvariantCulture)} must be in [0, 1] (0: the needle first, 1: right before the question)");
    }

    /// <summary>Throws a one-line error unless <paramref name="length"/> holds the needle, the question and the answer.</summary>
    public static void CheckLength(int length)
    {
        if (length < MinimumLength)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"needle: length = {length} tokens is too short to hold the needle, the question and the answer: use at least {MinimumLength}");
    }

    private static readonly string[] Adjectives =
        ["quiet", "old", "green", "small", "bright", "cold", "gentle", "narrow", "distant", "heavy", "pale", "warm", "silent", "golden", "wild", "soft"];

    private static readonly string[] Nouns =
        ["river", "garden", "window", "road", "forest", "letter", "village", "bridge", "meadow", "house", "candle", "harbour", "orchard", "lantern", "valley", "field"];

    private static readonly string[] Verbs =
        ["runs past", "waits by", "leans on", "hides behind", "looks over", "turns toward", "rests near", "stands beside", "drifts along", "shines upon"];

    private static readonly string[] Times =
        ["in the morning", "after the rain", "every evening", "at dusk", "before the storm", "all winter", "through the night", "on sundays"];

    /// <summary>Exactly <paramref name="characters"/> characters of generated sentences (the last one cut short).</summary>
    private static string Filler(int characters, Func<int, int> next)
    {
        var text = new StringBuilder(characters + 96);
        while (text.Length < characters)
        {
            text.Append("the ").Append(Adjectives[next(Adjectives.Length)]).Append(' ').Append(Nouns[next(Nouns.Length)])
                .Append(' ').Append(Verbs[next(Verbs.Length)]).Append(" the ").Append(Adjectives[next(Adjectives.Length)])
                .Append(' ').Append(Nouns[next(Nouns.Length)]);
            if (next(2) == 0) text.Append(' ').Append(Times[next(Times.Length)]);
            text.Append(". ");
        }
        return text.ToString(0, characters);
    }
}

/// <summary>
/// The built-in <c>needle</c> task's data: examples of random length in [<see cref="MinLength"/>,
/// <see cref="MaxLength"/>] tokens and random depth in [0, 1], a pure function of (seed, split, index).
/// </summary>
public sealed record NeedleTaskOptions
{
    /// <summary>Seed of the examples (<c>needle.seed</c>); the validation split draws from another stream.</summary>
    public ulong Seed { get; init; }

    /// <summary>Examples in the train split (<c>needle.train_examples</c>, at least 1).</summary>
    public int TrainExamples { get; init; } = 20_000;

    /// <summary>Examples in the validation split (<c>needle.validation_examples</c>, at least 1).</summary>
    public int ValidationExamples { get; init; } = 200;

    /// <summary>Shortest example, in tokens (<c>needle.min_length</c>, at least <see cref="NeedleHaystack.MinimumLength"/>).</summary>
    public int MinLength { get; init; } = 128;

    /// <summary>Longest example, in tokens (<c>needle.max_length</c>, at least min_length): what the training sequence must hold.</summary>
    public int MaxLength { get; init; } = 256;

    /// <summary>Throws a one-line <see cref="ArgumentException"/> naming the first invalid field; returns the options.</summary>
    public NeedleTaskOptions Validate()
    {
        int minimumLength = NeedleHaystack.MinimumLength;
        if (TrainExamples < 1) throw new ArgumentException($"needle.train_examples = {TrainExamples} must be at least 1");
        if (ValidationExamples < 1) throw new ArgumentException($"needle.validation_examples = {ValidationExamples} must be at least 1");
        if (MinLength < minimumLength)
            throw new ArgumentException($"needle.min_length = {MinLength} is too short to hold the needle, the question and the answer: use at least {minimumLength}");
        if (MaxLength < MinLength) throw new ArgumentException($"needle.max_length = {MaxLength} must be at least needle.min_length = {MinLength}");
        return this;
    }
}

/// <summary>The source of the built-in <c>needle</c> task (see <see cref="NeedleTaskOptions"/>).</summary>
public sealed class NeedleSource : IDataSource
{
    private readonly NeedleTaskOptions options;

    /// <summary>Creates the source; the options are validated.</summary>
    /// <param name="options">Lengths, counts and seed.</param>
    public NeedleSource(NeedleTaskOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options.Validate();
    }

    /// <inheritdoc />
    public IReadOnlyList<string> Splits { get; } = ["train", "validation"];

    /// <inheritdoc />
    public string Fingerprint => string.Create(CultureInfo.InvariantCulture,
        $"builtin:{TaskName}:v3:seed={options.Seed}:train={options.TrainExamples}:validation={options.ValidationExamples}:length={options.MinLength}-{options.MaxLength}");

    /// <inheritdoc />
    public IEnumerable<Example> Read(string split)
    {
        bool train = split == "train";
        ulong seed = train ? options.Seed : CounterRng.Mix(options.Seed ^ 0x76616C6964 /* "valid" */);
        int count = train ? options.TrainExamples : options.ValidationExamples;
        ulong shape = CounterRng.Key(seed, 0x7368617065 /* "shape" */, 0);
        for (int i = 0; i < count; i++)
        {
            int length = options.MinLength + (int)CounterRng.Below(shape, 2 * (ulong)i, (ulong)(options.MaxLength - options.MinLength + 1));
            double depth = CounterRng.Below(shape, 2 * (ulong)i + 1, 1001) / 1000.0;
            yield return NeedleHaystack.Generate(seed, i, length, depth).ToExample();
        }
    }

    /// <summary>
    /// The built-in task: "inputs" the prompt (no EOS: the answer continues it), "targets" the value with
    /// EOS, scored by exact match.
    /// </summary>
    public static DataTask Task(IVocabulary vocabulary, NeedleTaskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        options ??= new NeedleTaskOptions();
        return new DataTask(TaskName, new NeedleSource(options), [ExamplePreprocessors.Tokenize],
            new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary, AddEos: false), ["targets"] = new(vocabulary) },
            [new ExactMatch(normalize: false)],
            description: string.Create(CultureInfo.InvariantCulture,
                $"needle in a haystack (Gemini 1.5): a secret number hidden in generated filler, {options.MinLength}-{options.MaxLength} byte tokens at random depths; the answer is the number"));
    }

    /// <summary>The built-in task's name.</summary>
    public const string TaskName = "needle";
}
