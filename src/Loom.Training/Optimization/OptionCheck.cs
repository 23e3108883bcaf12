namespace Loom.Training.Optimization;

/// <summary>Range checks for option records; each names the field and the allowed range.</summary>
internal static class OptionCheck
{
    /// <summary>Value in [0, 1).</summary>
    public static double UnitInterval(double value, string field) =>
        value >= 0 && value < 1 ? value : throw Fail(field, value, "in [0, 1)");

    /// <summary>Finite value at least 0.</summary>
    public static double NonNegative(double value, string field) =>
        value >= 0 && double.IsFinite(value) ? value : throw Fail(field, value, "finite and >= 0");

    /// <summary>Finite value above 0.</summary>
    public static double Positive(double value, string field) =>
        value > 0 && double.IsFinite(value) ? value : throw Fail(field, value, "finite and > 0");

    /// <summary>Count at least 0.</summary>
    public static long NonNegative(long value, string field) =>
        value >= 0 ? value : throw Fail(field, value, ">= 0");

    /// <summary>Count at least 1.</summary>
    public static long Positive(long value, string field) =>
        value >= 1 ? value : throw Fail(field, value, ">= 1");

    public static ArgumentOutOfRangeException Fail(string field, object value, string range) =>
        new(field, value, $"{field} must be {range}; got {value}.");
}
