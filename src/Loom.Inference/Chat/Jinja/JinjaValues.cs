using System.Collections;
using System.Globalization;
using System.Text;

namespace Loom.Inference.Chat.Jinja;

/// <summary>A name or key with no value: renders as nothing, is falsy, and is what <c>is defined</c> tests for.</summary>
internal sealed class Undefined
{
    public static Undefined Value { get; } = new();

    private Undefined()
    {
    }
}

/// <summary>A <c>namespace()</c> object, whose attributes <c>{% set ns.x = … %}</c> may change from inside loops.</summary>
internal sealed class Namespace : Dictionary<string, object?>
{
    public Namespace()
        : base(StringComparer.Ordinal)
    {
    }
}

/// <summary>A callable value: a global function, a bound method or a macro.</summary>
internal sealed class Callable(string name, Func<List<object?>, Dictionary<string, object?>, object?> call)
{
    public string Name { get; } = name;

    public object? Invoke(List<object?> args, Dictionary<string, object?> kwargs) => call(args, kwargs);
}

/// <summary>Python-like semantics of Jinja values: null is None, numbers are long or double, lists are <see cref="List{T}"/>, mappings are string-keyed dictionaries.</summary>
internal static class Values
{
    /// <summary>A caller's value in the interpreter's own representation.</summary>
    public static object? Import(object? value) => value switch
    {
        null or string or bool or long or double or Undefined or Namespace or Callable => value,
        int i => (long)i,
        short or byte or sbyte or ushort or uint => Convert.ToInt64(value, CultureInfo.InvariantCulture),
        float f => (double)f,
        decimal d => (double)d,
        char c => c.ToString(),
        IDictionary<string, object?> map => map.ToDictionary(p => p.Key, p => Import(p.Value), StringComparer.Ordinal),
        IReadOnlyDictionary<string, object?> map => map.ToDictionary(p => p.Key, p => Import(p.Value), StringComparer.Ordinal),
        IDictionary map => map.Keys.Cast<object>().ToDictionary(k => Convert.ToString(k, CultureInfo.InvariantCulture)!, k => Import(map[k]), StringComparer.Ordinal),
        IEnumerable list => list.Cast<object?>().Select(Import).ToList(),
        _ => throw new ArgumentException($"a {value.GetType().Name} cannot be passed to a chat template; pass strings, numbers, booleans, lists or string-keyed dictionaries"),
    };

    public static bool Truthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        ICollection c => c.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? value) => value is long or double;

    public static double ToDouble(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException($"chat template: {TypeName(value)} is not a number"),
    };

    public static string TypeName(object? value) => value switch
    {
        null => "none",
        Undefined => "an undefined value",
        string => "a string",
        bool => "a boolean",
        long => "an integer",
        double => "a float",
        List<object?> => "a list",
        Dictionary<string, object?> => "a mapping",
        Callable => "a function",
        _ => value.GetType().Name,
    };

    /// <summary>What <c>{{ value }}</c> writes (Python's <c>str</c>).</summary>
    public static string Str(object? value) => value switch
    {
        Undefined => "",
        string s => s,
        _ => Repr(value),
    };

    /// <summary>Python's <c>repr</c>, as lists show their items.</summary>
    public static string Repr(object? value) => value switch
    {
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatText(d),
        string s => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "'",
        List<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        Dictionary<string, object?> map => "{" + string.Join(", ", map.Select(p => Repr(p.Key) + ": " + Repr(p.Value))) + "}",
        Callable c => $"<function {c.Name}>",
        _ => value.ToString() ?? "",
    };

    private static string FloatText(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        string text = d.ToString("R", CultureInfo.InvariantCulture).Replace('E', 'e'); // Python writes 1e-05, not 1E-05
        return text.Contains('.') || text.Contains('e') ? text : text + ".0";
    }

    public static bool AreEqual(object? a, object? b)
    {
        if (a is Undefined) a = null;
        if (b is Undefined) b = null;
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a) == ToDouble(b);
        if (a is bool x && IsNumber(b)) return (x ? 1 : 0) == ToDouble(b);
        if (b is bool y && IsNumber(a)) return (y ? 1 : 0) == ToDouble(a);
        return (a, b) switch
        {
            (null, null) => true,
            (null, _) or (_, null) => false,
            (string s, string t) => s == t,
            (bool p, bool q) => p == q,
            (List<object?> l, List<object?> m) => l.Count == m.Count && l.Zip(m).All(z => AreEqual(z.First, z.Second)),
            (Dictionary<string, object?> d, Dictionary<string, object?> e) => d.Count == e.Count && d.All(p => e.TryGetValue(p.Key, out var v) && AreEqual(p.Value, v)),
            _ => ReferenceEquals(a, b),
        };
    }

    public static int Compare(object? a, object? b)
    {
        if ((IsNumber(a) || a is bool) && (IsNumber(b) || b is bool)) return ToDouble(a).CompareTo(ToDouble(b));
        if (a is string s && b is string t) return string.CompareOrdinal(s, t);
        if (a is List<object?> l && b is List<object?> m)
        {
            for (int i = 0; i < Math.Min(l.Count, m.Count); i++)
            {
                int c = Compare(l[i], m[i]);
                if (c != 0) return c;
            }
            return l.Count.CompareTo(m.Count);
        }
        throw new InvalidOperationException($"chat template: cannot compare {TypeName(a)} with {TypeName(b)}");
    }

    public static bool Contains(object? container, object? item) => container switch
    {
        string s when item is string t => s.Contains(t, StringComparison.Ordinal),
        List<object?> list => list.Any(x => AreEqual(x, item)),
        Dictionary<string, object?> map => item is string key && map.ContainsKey(key),
        null or Undefined => false,
        _ => throw new InvalidOperationException($"chat template: 'in' needs a string, list or mapping on its right, not {TypeName(container)}"),
    };

    /// <summary>The items a for loop or a filter walks over.</summary>
    public static List<object?> Iterate(object? value) => value switch
    {
        null or Undefined => [],
        List<object?> list => list,
        Dictionary<string, object?> map => [.. map.Keys],
        string s => [.. s.Select(c => (object?)c.ToString())],
        _ => throw new InvalidOperationException($"chat template: cannot loop over {TypeName(value)}"),
    };

    /// <summary>Python's <c>json.dumps(value, ensure_ascii=False)</c>, as transformers' <c>tojson</c> filter.</summary>
    public static string Json(object? value, int? indent, bool sortKeys)
    {
        var text = new StringBuilder();
        Write(value, 0);
        return text.ToString();

        void Write(object? v, int depth)
        {
            switch (v)
            {
                case null or Undefined: text.Append("null"); break;
                case bool b: text.Append(b ? "true" : "false"); break;
                case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: text.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatText(d)); break;
                case string s: JsonString(text, s); break;
                case List<object?> list: Many(list.Select(x => ((string?)null, x)).ToList(), '[', ']', depth); break;
                case Dictionary<string, object?> map:
                {
                    var pairs = map.Select(p => ((string?)p.Key, p.Value));
                    if (sortKeys) pairs = pairs.OrderBy(p => p.Item1, StringComparer.Ordinal);
                    Many(pairs.ToList(), '{', '}', depth);
                    break;
                }
                default: throw new InvalidOperationException($"chat template: {TypeName(v)} cannot be written as JSON");
            }
        }

        void Many(List<(string? Key, object? Value)> items, char open, char close, int depth)
        {
            text.Append(open);
            if (items.Count == 0) { text.Append(close); return; }
            for (int i = 0; i < items.Count; i++)
            {
                if (i > 0) text.Append(indent is null ? ", " : ",");
                if (indent is { } n) text.Append('\n').Append(' ', n * (depth + 1));
                if (items[i].Key is { } key) { JsonString(text, key); text.Append(": "); }
                Write(items[i].Value, depth + 1);
            }
            if (indent is { } m) text.Append('\n').Append(' ', m * depth);
            text.Append(close);
        }
    }

    private static void JsonString(StringBuilder text, string s)
    {
        text.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }
}
