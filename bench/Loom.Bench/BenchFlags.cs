using System.Globalization;

namespace Loom.Bench;

/// <summary>
/// Reads a benchmark's <c>--flag value</c> arguments into its settings record: one reader for every
/// benchmark, so each says only which flags it has and what they set, and bad values get the same errors.
/// </summary>
internal sealed class BenchFlags
{
    private readonly IReadOnlyList<string> args;
    private int flag;   // where the flag being read is
    private int cursor; // the last argument consumed: the flag, or its value

    private BenchFlags(IReadOnlyList<string> args) => this.args = args;

    /// <summary>The flag being read, e.g. <c>--steps</c>.</summary>
    public string Name => args[flag];

    /// <summary>
    /// Folds the arguments into <paramref name="initial"/>: <paramref name="apply"/> is called once per flag,
    /// reads the flag's value (if any) through the reader, and returns the updated settings.
    /// </summary>
    public static T Parse<T>(IReadOnlyList<string> args, T initial, Func<T, BenchFlags, T> apply)
    {
        var reader = new BenchFlags(args);
        var settings = initial;
        for (reader.flag = 0; reader.flag < args.Count; reader.flag = reader.cursor + 1)
        {
            reader.cursor = reader.flag;
            settings = apply(settings, reader);
        }
        return settings;
    }

    /// <summary>The flag's value: the next argument.</summary>
    public string Value() => cursor + 1 < args.Count ? args[++cursor] : throw new ArgumentException($"{Name} needs a value");

    /// <summary>The flag's value as an integer greater than 0.</summary>
    public int PositiveInt() => Positive(Value());

    /// <summary>The flag's value as an integer of 0 or more.</summary>
    public int NonNegativeInt() => (int)Math.Min(int.MaxValue, NonNegativeLong());

    /// <summary>The flag's value as a 64-bit integer of 0 or more.</summary>
    public long NonNegativeLong()
    {
        string text = Value();
        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) && v >= 0
            ? v
            : throw new ArgumentException($"{Name} needs an integer >= 0, got '{text}'");
    }

    /// <summary>The flag's value as comma-separated integers greater than 0, e.g. <c>1,4,16</c>.</summary>
    public IReadOnlyList<int> PositiveInts() => [.. Value().Split(',', StringSplitOptions.TrimEntries).Select(Positive)];

    /// <summary>The flag's value as a number; <paramref name="minimum"/> is allowed when <paramref name="inclusive"/>.</summary>
    public double Number(double minimum, bool inclusive)
    {
        string text = Value();
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && (inclusive ? v >= minimum : v > minimum)
            ? v
            : throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{Name} needs a number {(inclusive ? ">=" : ">")} {minimum}, got '{text}'"));
    }

    /// <summary>The error for a flag the benchmark does not have.</summary>
    public ArgumentException Unknown() => new($"unknown flag '{Name}'");

    private int Positive(string text) => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0
        ? v
        : throw new ArgumentException($"{Name} needs a positive integer, got '{text}'");
}
