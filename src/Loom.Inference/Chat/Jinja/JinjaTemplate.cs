using System.Globalization;
using System.Text;

namespace Loom.Inference.Chat.Jinja;

/// <summary>
/// A Jinja2 template, as Hugging Face chat templates (tokenizer_config.json's <c>chat_template</c>) are
/// written, rendered the way transformers renders them: <c>trim_blocks</c> and <c>lstrip_blocks</c> on,
/// <c>break</c>/<c>continue</c> allowed, and <c>raise_exception</c>, <c>namespace</c>, <c>range</c> and
/// <c>strftime_now</c> as globals.
/// </summary>
/// <remarks>
/// The subset covers what chat templates use: output, if/elif/else, for (with <c>loop</c> and else),
/// set (also on namespaces and as a block), macros, whitespace control, Python-like operators,
/// attribute, item and slice access, string and mapping methods (strip, split, startswith, items, get…),
/// the common filters (trim, length, upper, lower, tojson, default, join, first, last, …) and tests
/// (defined, none, string, mapping, iterable, …). Template inheritance, includes and autoescaping are not supported.
/// </remarks>
public sealed class JinjaTemplate
{
    private readonly List<Node> body;

    /// <summary>Parses a template.</summary>
    /// <param name="source">The template text.</param>
    /// <exception cref="FormatException">The template is not valid Jinja, or uses a statement this interpreter lacks.</exception>
    public JinjaTemplate(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        body = JinjaParser.Parse(source);
    }

    /// <summary>The template's text.</summary>
    public string Source { get; }

    /// <summary>Renders the template.</summary>
    /// <param name="variables">
    /// The template's variables: strings, booleans, numbers, null, lists and string-keyed dictionaries (nested freely).
    /// </param>
    /// <param name="now">The time <c>strftime_now</c> formats; the current local time when null.</param>
    /// <returns>The rendered text.</returns>
    /// <exception cref="ArgumentException">The template called <c>raise_exception</c> (the message is the template's), or a variable has an unsupported type.</exception>
    /// <exception cref="InvalidOperationException">The template does something invalid with its values (an unknown filter, a call of a non-function, …).</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, DateTime? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = new Frame(null);
        foreach (var (name, function) in Builtins.Globals(now ?? DateTime.Now)) globals.Variables[name] = function;
        var root = new Frame(globals);
        foreach (var (name, value) in variables) root.Variables[name] = Values.Import(value);
        var output = new StringBuilder();
        new Renderer(output).Run(body, root);
        return output.ToString();
    }
}

/// <summary>A scope of variables; loops and macros open a new one, <c>if</c> does not.</summary>
internal sealed class Frame(Frame? parent)
{
    public Dictionary<string, object?> Variables { get; } = new(StringComparer.Ordinal);

    public Frame? Parent { get; } = parent;

    public object? Lookup(string name)
    {
        for (var frame = this; frame is not null; frame = frame.Parent)
            if (frame.Variables.TryGetValue(name, out var value)) return value;
        return Undefined.Value;
    }
}

internal enum Flow { Normal, Break, Continue }

internal sealed class Renderer(StringBuilder output)
{
    public Flow Run(List<Node> nodes, Frame frame)
    {
        foreach (var node in nodes)
        {
            var flow = Run(node, frame);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow Run(Node node, Frame frame)
    {
        switch (node)
        {
            case TextNode text: output.Append(text.Text); return Flow.Normal;
            case OutputNode o: output.Append(Values.Str(Evaluate(o.Value, frame))); return Flow.Normal;
            case IfNode i:
                foreach (var (test, body) in i.Branches)
                    if (Values.Truthy(Evaluate(test, frame))) return Run(body, frame);
                return i.Else is null ? Flow.Normal : Run(i.Else, frame);
            case ForNode f: return For(f, frame);
            case SetNode s: Set(s, frame); return Flow.Normal;
            case MacroNode m: frame.Variables[m.Name] = Macro(m, frame); return Flow.Normal;
            case LoopControlNode l: return l.Break ? Flow.Break : Flow.Continue;
            case ScopeNode s: return Run(s.Body, frame);
            default: throw new InvalidOperationException($"chat template: unknown node {node.GetType().Name}");
        }
    }

    private Flow For(ForNode f, Frame frame)
    {
        var source = Evaluate(f.Items, frame);
        var items = Values.Iterate(source);
        if (f.Filter is not null)
            items = [.. items.Where(item => Values.Truthy(Evaluate(f.Filter, Bind(f, item, new Frame(frame)))))];
        if (items.Count == 0) return f.Else is null ? Flow.Normal : Run(f.Else, frame);
        for (int i = 0; i < items.Count; i++)
        {
            var scope = Bind(f, items[i], new Frame(frame));
            scope.Variables["loop"] = new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["index0"] = (long)i,
                ["index"] = (long)(i + 1),
                ["revindex0"] = (long)(items.Count - i - 1),
                ["revindex"] = (long)(items.Count - i),
                ["first"] = i == 0,
                ["last"] = i == items.Count - 1,
                ["length"] = (long)items.Count,
                ["previtem"] = i > 0 ? items[i - 1] : Undefined.Value,
                ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Value,
                ["depth"] = 1L,
                ["depth0"] = 0L,
            };
            if (Run(f.Body, scope) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    private static Frame Bind(ForNode f, object? item, Frame scope)
    {
        if (f.Targets.Count == 1) scope.Variables[f.Targets[0]] = item;
        else Unpack(f.Targets, item, scope);
        return scope;
    }

    private static void Unpack(List<string> names, object? value, Frame scope)
    {
        var parts = value as List<object?> ?? throw new InvalidOperationException($"chat template: cannot unpack {Values.TypeName(value)} into {string.Join(", ", names)}");
        if (parts.Count != names.Count)
            throw new InvalidOperationException($"chat template: cannot unpack {parts.Count} values into {names.Count} names ({string.Join(", ", names)})");
        for (int i = 0; i < names.Count; i++) scope.Variables[names[i]] = parts[i];
    }

    private void Set(SetNode s, Frame frame)
    {
        object? value;
        if (s.Value is not null) value = Evaluate(s.Value, frame);
        else
        {
            var captured = new StringBuilder();
            new Renderer(captured).Run(s.Body!, frame);
            value = captured.ToString();
        }
        if (s.Attribute is not null)
        {
            var target = frame.Lookup(s.Name);
            if (target is not Namespace ns)
                throw new InvalidOperationException($"chat template: cannot set '{s.Name}.{s.Attribute}': '{s.Name}' is {Values.TypeName(target)}, not a namespace()");
            ns[s.Attribute] = value;
        }
        else if (s.Unpack is not null) Unpack(s.Unpack, value, frame);
        else frame.Variables[s.Name] = value;
    }

    private Callable Macro(MacroNode m, Frame definedIn) => new(m.Name, (args, kwargs) =>
    {
        if (args.Count > m.Parameters.Count)
            throw new InvalidOperationException($"chat template: macro '{m.Name}' takes {m.Parameters.Count} arguments, not {args.Count}");
        var scope = new Frame(definedIn);
        for (int i = 0; i < m.Parameters.Count; i++)
        {
            var (name, fallback) = m.Parameters[i];
            scope.Variables[name] = i < args.Count ? args[i]
                : kwargs.TryGetValue(name, out var given) ? given
                : fallback is not null ? Evaluate(fallback, scope) : Undefined.Value;
        }
        var captured = new StringBuilder();
        new Renderer(captured).Run(m.Body, scope);
        return captured.ToString();
    });

    public object? Evaluate(Expr expr, Frame frame)
    {
        switch (expr)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return frame.Lookup(n.Name);
            case AttrExpr a: return Builtins.Attribute(Evaluate(a.Target, frame), a.Name);
            case ItemExpr i: return Builtins.Item(Evaluate(i.Target, frame), Evaluate(i.Key, frame));
            case SliceExpr s:
                return Builtins.Slice(Evaluate(s.Target, frame),
                    s.Start is null ? null : Evaluate(s.Start, frame),
                    s.Stop is null ? null : Evaluate(s.Stop, frame),
                    s.Step is null ? null : Evaluate(s.Step, frame));
            case CallExpr c:
            {
                var target = Evaluate(c.Target, frame);
                if (target is not Callable callable)
                    throw new InvalidOperationException($"chat template line {c.Line}: {Describe(c.Target)} is {Values.TypeName(target)}, not a function");
                return callable.Invoke([.. c.Args.Select(a => Evaluate(a, frame))], Kwargs(c.Kwargs, frame));
            }
            case FilterExpr f:
                return Builtins.Filter(f.Name, Evaluate(f.Target, frame), [.. f.Args.Select(a => Evaluate(a, frame))], Kwargs(f.Kwargs, frame), f.Line);
            case TestExpr t:
            {
                bool result = Builtins.Test(t.Name, Evaluate(t.Target, frame), [.. t.Args.Select(a => Evaluate(a, frame))], t.Line);
                return result != t.Negated;
            }
            case UnaryExpr u:
            {
                var operand = Evaluate(u.Operand, frame);
                return u.Op switch
                {
                    "not" => !Values.Truthy(operand),
                    "-" => operand is long l ? -l : (object)-Values.ToDouble(operand),
                    _ => operand,
                };
            }
            case BinaryExpr b: return Binary(b, frame);
            case CondExpr c:
                return Values.Truthy(Evaluate(c.Test, frame)) ? Evaluate(c.Then, frame)
                    : c.Else is null ? Undefined.Value : Evaluate(c.Else, frame);
            case ListExpr l: return l.Items.Select(i => Evaluate(i, frame)).ToList();
            case DictExpr d:
            {
                var map = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (var (key, value) in d.Items) map[Values.Str(Evaluate(key, frame))] = Evaluate(value, frame);
                return map;
            }
            default: throw new InvalidOperationException($"chat template: unknown expression {expr.GetType().Name}");
        }
    }

    private Dictionary<string, object?> Kwargs(List<(string Name, Expr Value)> kwargs, Frame frame)
    {
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in kwargs) values[name] = Evaluate(value, frame);
        return values;
    }

    private static string Describe(Expr expr) => expr switch
    {
        NameExpr n => $"'{n.Name}'",
        AttrExpr a => $"'{a.Name}'",
        _ => "the called value",
    };

    private object? Binary(BinaryExpr b, Frame frame)
    {
        var left = Evaluate(b.Left, frame);
        switch (b.Op)
        {
            case "and": return Values.Truthy(left) ? Evaluate(b.Right, frame) : left;
            case "or": return Values.Truthy(left) ? left : Evaluate(b.Right, frame);
        }
        var right = Evaluate(b.Right, frame);
        switch (b.Op)
        {
            case "==": return Values.AreEqual(left, right);
            case "!=": return !Values.AreEqual(left, right);
            case "<": return Values.Compare(left, right) < 0;
            case ">": return Values.Compare(left, right) > 0;
            case "<=": return Values.Compare(left, right) <= 0;
            case ">=": return Values.Compare(left, right) >= 0;
            case "in": return Values.Contains(right, left);
            case "not in": return !Values.Contains(right, left);
            case "~": return Values.Str(left) + Values.Str(right);
            case "+":
                if (left is string ls && right is string rs) return ls + rs;
                if (left is List<object?> ll && right is List<object?> rl) return ll.Concat(rl).ToList();
                return Arithmetic(b, left, right);
            case "*" when left is string s && right is long n: return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n)));
            case "*" when left is List<object?> list && right is long n: return Enumerable.Repeat(list, (int)Math.Max(0, n)).SelectMany(x => x).ToList();
            default: return Arithmetic(b, left, right);
        }
    }

    private static object Arithmetic(BinaryExpr b, object? left, object? right)
    {
        if (!Values.IsNumber(left) && left is not bool || !Values.IsNumber(right) && right is not bool)
            throw new InvalidOperationException($"chat template line {b.Line}: '{b.Op}' cannot combine {Values.TypeName(left)} and {Values.TypeName(right)}");
        if (left is bool lb) left = lb ? 1L : 0L;
        if (right is bool rb) right = rb ? 1L : 0L;
        if (left is long x && right is long y)
        {
            switch (b.Op)
            {
                case "+": return x + y;
                case "-": return x - y;
                case "*": return x * y;
                case "//": return y == 0 ? throw Zero(b) : (long)Math.Floor((double)x / y);
                case "%": return y == 0 ? throw Zero(b) : ((x % y) + y) % y;
                case "**" when y >= 0: return (long)Math.Pow(x, y);
            }
        }
        double p = Values.ToDouble(left), q = Values.ToDouble(right);
        return b.Op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw Zero(b) : p / q,
            "//" => q == 0 ? throw Zero(b) : Math.Floor(p / q),
            "%" => q == 0 ? throw Zero(b) : p - (q * Math.Floor(p / q)),
            "**" => Math.Pow(p, q),
            _ => throw new InvalidOperationException($"chat template line {b.Line}: unknown operator '{b.Op}'"),
        };
    }

    private static InvalidOperationException Zero(BinaryExpr b) => new($"chat template line {b.Line}: division by zero");
}

internal static class Builtins
{
    public static IEnumerable<(string, Callable)> Globals(DateTime now)
    {
        yield return ("raise_exception", new Callable("raise_exception", (args, _) =>
            throw new ArgumentException(args.Count > 0 ? Values.Str(args[0]) : "the chat template raised an exception")));
        yield return ("namespace", new Callable("namespace", (args, kwargs) =>
        {
            var ns = new Namespace();
            foreach (var arg in args)
                if (arg is Dictionary<string, object?> map) foreach (var (k, v) in map) ns[k] = v;
            foreach (var (k, v) in kwargs) ns[k] = v;
            return ns;
        }));
        yield return ("range", new Callable("range", (args, _) =>
        {
            long start = 0, stop, step = 1;
            if (args.Count == 1) stop = Int(args[0]);
            else if (args.Count >= 2) { start = Int(args[0]); stop = Int(args[1]); if (args.Count > 2) step = Int(args[2]); }
            else throw new InvalidOperationException("chat template: range() needs 1 to 3 arguments");
            if (step == 0) throw new InvalidOperationException("chat template: range() step must not be zero");
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
            return list;
        }));
        yield return ("strftime_now", new Callable("strftime_now", (args, _) => Strftime(now, args.Count > 0 ? Values.Str(args[0]) : "%Y-%m-%d")));
        yield return ("dict", new Callable("dict", (args, kwargs) =>
        {
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var arg in args)
                if (arg is Dictionary<string, object?> m) foreach (var (k, v) in m) map[k] = v;
            foreach (var (k, v) in kwargs) map[k] = v;
            return map;
        }));
    }

    private static long Int(object? value) => value is long l ? l : throw new InvalidOperationException($"chat template: expected an integer, not {Values.TypeName(value)}");

    /// <summary>Python's strftime for the directives templates use.</summary>
    public static string Strftime(DateTime time, string format)
    {
        var text = new StringBuilder();
        var culture = CultureInfo.InvariantCulture;
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length) { text.Append(format[i]); continue; }
            char d = format[++i];
            if (d == '-' && i + 1 < format.Length && format[i + 1] == 'd') { i++; text.Append(time.Day.ToString(culture)); continue; }
            text.Append(d switch
            {
                'Y' => time.ToString("yyyy", culture),
                'y' => time.ToString("yy", culture),
                'm' => time.ToString("MM", culture),
                'd' => time.ToString("dd", culture),
                'H' => time.ToString("HH", culture),
                'I' => time.ToString("hh", culture),
                'M' => time.ToString("mm", culture),
                'S' => time.ToString("ss", culture),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'B' => time.ToString("MMMM", culture),
                'b' => time.ToString("MMM", culture),
                'A' => time.ToString("dddd", culture),
                'a' => time.ToString("ddd", culture),
                'j' => time.DayOfYear.ToString("000", culture),
                '%' => "%",
                _ => "%" + d,
            });
        }
        return text.ToString();
    }

    public static object? Attribute(object? target, string name)
    {
        switch (target)
        {
            case Namespace ns: return ns.TryGetValue(name, out var v) ? v : Undefined.Value;
            case Dictionary<string, object?> map:
                if (name is "items" or "keys" or "values" or "get") return MapMethod(map, name);
                return map.TryGetValue(name, out var value) ? value : Undefined.Value;
            case string s: return (object?)StringMethod(s, name) ?? Undefined.Value;
            default: return Undefined.Value;
        }
    }

    public static object? Item(object? target, object? key)
    {
        switch (target)
        {
            case Dictionary<string, object?> map when key is string k:
                return map.TryGetValue(k, out var value) ? value : Attribute(map, k) is Callable c && !map.ContainsKey(k) ? c : Undefined.Value;
            case List<object?> list when key is long i:
                if (i < 0) i += list.Count;
                return i >= 0 && i < list.Count ? list[(int)i] : Undefined.Value;
            case string s when key is long i:
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Value;
            case string s when key is string name: return (object?)StringMethod(s, name) ?? Undefined.Value;
            default: return Undefined.Value;
        }
    }

    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        long by = step is null ? 1 : Int(step);
        if (by == 0) throw new InvalidOperationException("chat template: a slice step must not be zero");
        List<object?> items = target switch
        {
            List<object?> list => list,
            string s => [.. s.Select(c => (object?)c.ToString())],
            null or Undefined => [],
            _ => throw new InvalidOperationException($"chat template: cannot slice {Values.TypeName(target)}"),
        };
        long n = items.Count;
        long Clamp(object? v, long fallback, long low, long high)
        {
            if (v is null) return fallback;
            long i = Int(v);
            if (i < 0) i += n;
            return Math.Clamp(i, low, high);
        }
        var result = new List<object?>();
        if (by > 0)
            for (long i = Clamp(start, 0, 0, n), end = Clamp(stop, n, 0, n); i < end; i += by) result.Add(items[(int)i]);
        else
            for (long i = Clamp(start, n - 1, -1, n - 1), end = Clamp(stop, -1, -1, n - 1); i > end; i += by) result.Add(items[(int)i]);
        return target is string ? string.Concat(result.Select(Values.Str)) : result;
    }

    private static Callable MapMethod(Dictionary<string, object?> map, string name) => new(name, (args, _) => name switch
    {
        "items" => map.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList(),
        "keys" => map.Keys.Select(k => (object?)k).ToList(),
        "values" => map.Values.ToList(),
        _ => args.Count > 0 && args[0] is string key && map.TryGetValue(key, out var value) ? value : args.Count > 1 ? args[1] : null,
    });

    private static Callable? StringMethod(string s, string name)
    {
        string Chars(List<object?> args) => args.Count > 0 && args[0] is string c ? c : "";
        return name switch
        {
            "strip" => new(name, (args, _) => args.Count > 0 && args[0] is string c ? s.Trim(c.ToCharArray()) : s.Trim()),
            "lstrip" => new(name, (args, _) => args.Count > 0 && args[0] is string c ? s.TrimStart(c.ToCharArray()) : s.TrimStart()),
            "rstrip" => new(name, (args, _) => args.Count > 0 && args[0] is string c ? s.TrimEnd(c.ToCharArray()) : s.TrimEnd()),
            "startswith" => new(name, (args, _) => s.StartsWith(Chars(args), StringComparison.Ordinal)),
            "endswith" => new(name, (args, _) => s.EndsWith(Chars(args), StringComparison.Ordinal)),
            "upper" => new(name, (_, _) => s.ToUpperInvariant()),
            "lower" => new(name, (_, _) => s.ToLowerInvariant()),
            "title" => new(name, (_, _) => Title(s)),
            "capitalize" => new(name, (_, _) => Capitalize(s)),
            "replace" => new(name, (args, _) => args.Count >= 2 ? s.Replace(Values.Str(args[0]), Values.Str(args[1]), StringComparison.Ordinal) : s),
            "split" => new(name, (args, _) => args.Count > 0 && args[0] is string sep
                ? s.Split(sep).Select(x => (object?)x).ToList()
                : s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(x => (object?)x).ToList()),
            "find" => new(name, (args, _) => (long)s.IndexOf(Chars(args), StringComparison.Ordinal)),
            "count" => new(name, (args, _) => Chars(args).Length == 0 ? s.Length + 1L : (long)((s.Length - s.Replace(Chars(args), "", StringComparison.Ordinal).Length) / Chars(args).Length)),
            _ => null,
        };
    }

    private static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            text.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = !char.IsLetterOrDigit(c);
        }
        return text.ToString();
    }

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    public static object? Filter(string name, object? value, List<object?> args, Dictionary<string, object?> kwargs, int line)
    {
        object? Arg(int i, string key, object? fallback) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : fallback;
        switch (name)
        {
            case "trim": return Arg(0, "chars", null) is string chars ? Values.Str(value).Trim(chars.ToCharArray()) : Values.Str(value).Trim();
            case "length" or "count":
                return value switch
                {
                    string s => (long)s.Length,
                    List<object?> l => (long)l.Count,
                    Dictionary<string, object?> m => (long)m.Count,
                    null or Undefined => 0L,
                    _ => throw new InvalidOperationException($"chat template line {line}: {Values.TypeName(value)} has no length"),
                };
            case "upper": return Values.Str(value).ToUpperInvariant();
            case "lower": return Values.Str(value).ToLowerInvariant();
            case "capitalize": return Capitalize(Values.Str(value));
            case "title": return Title(Values.Str(value));
            case "string": return Values.Str(value);
            case "safe": return value;
            case "tojson":
            {
                object? indent = Arg(0, "indent", null);
                return Values.Json(value, indent is long n ? (int)n : null, Values.Truthy(Arg(1, "sort_keys", false)));
            }
            case "default" or "d":
            {
                object? fallback = Arg(0, "default_value", "");
                bool boolean = Values.Truthy(Arg(1, "boolean", false));
                return value is Undefined || (boolean && !Values.Truthy(value)) ? fallback : value;
            }
            case "join":
            {
                string separator = Values.Str(Arg(0, "d", ""));
                var items = Values.Iterate(value);
                if (Arg(1, "attribute", null) is string attribute) items = [.. items.Select(i => Attribute(i, attribute))];
                return string.Join(separator, items.Select(Values.Str));
            }
            case "first": return Values.Iterate(value) is { Count: > 0 } f ? f[0] : Undefined.Value;
            case "last": return Values.Iterate(value) is { Count: > 0 } l2 ? l2[^1] : Undefined.Value;
            case "list": return Values.Iterate(value).ToList();
            case "reverse":
                return value is string rs ? new string([.. rs.Reverse()]) : Enumerable.Reverse(Values.Iterate(value)).ToList();
            case "items":
                return value is Dictionary<string, object?> map ? map.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList()
                    : value is null or Undefined ? new List<object?>() : throw new InvalidOperationException($"chat template line {line}: items needs a mapping, not {Values.TypeName(value)}");
            case "int":
                return value switch
                {
                    long l => l,
                    double d => (long)Math.Truncate(d),
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long l) => l,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long l => (double)l,
                    double d => d,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
                    _ => Arg(0, "default", 0.0),
                };
            case "abs": return value is long al ? Math.Abs(al) : Math.Abs(Values.ToDouble(value));
            case "replace":
                return Values.Str(value).Replace(Values.Str(Arg(0, "old", "")), Values.Str(Arg(1, "new", "")), StringComparison.Ordinal);
            case "unique":
            {
                var seen = new List<object?>();
                foreach (var item in Values.Iterate(value))
                    if (!seen.Any(s => Values.AreEqual(s, item))) seen.Add(item);
                return seen;
            }
            case "map":
                if (kwargs.TryGetValue("attribute", out var mapped) && mapped is string attributeName)
                    return Values.Iterate(value).Select(i => Attribute(i, attributeName) is Undefined ? Item(i, attributeName) : Attribute(i, attributeName)).ToList();
                if (args.Count > 0 && args[0] is string filterName)
                    return Values.Iterate(value).Select(i => Filter(filterName, i, args.Skip(1).ToList(), [], line)).ToList();
                throw new InvalidOperationException($"chat template line {line}: map needs a filter name or attribute=");
            case "selectattr" or "rejectattr":
            {
                if (args.Count == 0 || args[0] is not string attribute)
                    throw new InvalidOperationException($"chat template line {line}: {name} needs an attribute name");
                bool keep = name == "selectattr";
                return Values.Iterate(value).Where(item =>
                {
                    var v = Attribute(item, attribute);
                    bool passed = args.Count > 1 && args[1] is string test ? Test(test, v, args.Skip(2).ToList(), line) : Values.Truthy(v);
                    return passed == keep;
                }).ToList();
            }
            case "select" or "reject":
            {
                bool keep = name == "select";
                return Values.Iterate(value).Where(item =>
                    (args.Count > 0 && args[0] is string test ? Test(test, item, args.Skip(1).ToList(), line) : Values.Truthy(item)) == keep).ToList();
            }
            case "indent":
            {
                int width = Arg(0, "width", 4L) is long w ? (int)w : 4;
                bool first = Values.Truthy(Arg(1, "first", false));
                string pad = new(' ', width);
                var lines = Values.Str(value).Split('\n');
                for (int i = 0; i < lines.Length; i++)
                    if ((i > 0 || first) && lines[i].Length > 0) lines[i] = pad + lines[i];
                return string.Join('\n', lines);
            }
            case "wordcount": return (long)Values.Str(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            case "min" or "max":
            {
                var items = Values.Iterate(value);
                if (items.Count == 0) return Undefined.Value;
                var best = items[0];
                foreach (var item in items.Skip(1))
                    if ((Values.Compare(item, best) < 0) == (name == "min") && Values.Compare(item, best) != 0) best = item;
                return best;
            }
            case "sum": return Values.Iterate(value).Aggregate((object?)0L, (a, b) => a is long x && b is long y ? x + y : Values.ToDouble(a) + Values.ToDouble(b));
            default: throw new InvalidOperationException($"chat template line {line}: unknown filter '{name}'");
        }
    }

    public static bool Test(string name, object? value, List<object?> args, int line)
    {
        object? Arg() => args.Count > 0 ? args[0] : throw new InvalidOperationException($"chat template line {line}: test '{name}' needs an argument");
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "number" => value is long or double,
            "integer" => value is long,
            "float" => value is double,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "mapping" => value is Dictionary<string, object?>,
            "iterable" => value is string or List<object?> or Dictionary<string, object?>,
            "sequence" => value is string or List<object?> or Dictionary<string, object?>,
            "callable" => value is Callable,
            "even" => value is long e && e % 2 == 0,
            "odd" => value is long o && o % 2 != 0,
            "divisibleby" => value is long dv && Arg() is long by && by != 0 && dv % by == 0,
            "lower" => value is string ls && ls == ls.ToLowerInvariant(),
            "upper" => value is string us && us == us.ToUpperInvariant(),
            "eq" or "equalto" or "==" => Values.AreEqual(value, Arg()),
            "ne" or "!=" => !Values.AreEqual(value, Arg()),
            "lt" or "lessthan" or "<" => Values.Compare(value, Arg()) < 0,
            "gt" or "greaterthan" or ">" => Values.Compare(value, Arg()) > 0,
            "le" or "<=" => Values.Compare(value, Arg()) <= 0,
            "ge" or ">=" => Values.Compare(value, Arg()) >= 0,
            "in" => Values.Contains(Arg(), value),
            "sameas" => ReferenceEquals(value, Arg()) || (value is null && Arg() is null) || (value is bool a && Arg() is bool b && a == b),
            _ => throw new InvalidOperationException($"chat template line {line}: unknown test '{name}'"),
        };
    }
}
