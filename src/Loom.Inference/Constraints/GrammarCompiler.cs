using System.Text;

namespace Loom.Inference.Constraints;

/// <summary>
/// Compiles grammars into a <see cref="ByteAutomaton"/>. JSON is emitted compactly: no whitespace except at most one
/// space after <c>:</c> and <c>,</c>, so a model cannot loop on whitespace; numbers have bounded digits; strings are
/// valid UTF-8 with JSON's escapes (no lone surrogates).
/// </summary>
internal sealed class GrammarCompiler
{
    /// <summary>The most integer digits of a number (15 keeps every integer exact in a double).</summary>
    public const int MaxIntegerDigits = 15;

    /// <summary>The most fraction digits of a number.</summary>
    public const int MaxFractionDigits = 15;

    /// <summary>The most exponent digits of a number (two keep every number finite in a double).</summary>
    public const int MaxExponentDigits = 2;

    private readonly Dictionary<Grammar, int> grammarRules = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, int> namedRules = [];

    /// <summary>The builder the fragments go to.</summary>
    public AutomatonBuilder Builder { get; } = new();

    /// <summary>Compiles <paramref name="grammar"/>.</summary>
    public static ByteAutomaton Compile(Grammar grammar)
    {
        var compiler = new GrammarCompiler();
        int start = grammar.Emit(compiler, compiler.Builder.ReturnNode);
        return compiler.Builder.Build(start);
    }

    /// <summary>The rule of <paramref name="grammar"/> (compiled once, called from every use).</summary>
    public int RuleOf(Grammar grammar)
    {
        if (grammarRules.TryGetValue(grammar, out int rule)) return rule;
        rule = Builder.Placeholder();
        grammarRules.Add(grammar, rule);
        Builder.SetTargets(rule, grammar.Emit(this, Builder.ReturnNode));
        return rule;
    }

    /// <summary>The rule named <paramref name="name"/>, emitted by <paramref name="body"/> the first time (recursion allowed).</summary>
    public int Rule(string name, Func<int, int> body)
    {
        if (namedRules.TryGetValue(name, out int rule)) return rule;
        rule = Builder.Placeholder();
        namedRules.Add(name, rule);
        Builder.SetTargets(rule, body(Builder.ReturnNode));
        return rule;
    }

    /// <summary>Between <paramref name="min"/> and <paramref name="max"/> (<see cref="int.MaxValue"/>: no bound) calls of
    /// <paramref name="itemRule"/>, with <paramref name="separator"/> (a fragment emitter) between them.</summary>
    /// <remarks>With <c>leadingSeparator</c> the first item, too, has the separator before it (items that follow others).</remarks>
    public int Repeat(int itemRule, int min, int max, Func<int, int>? separator, int next, bool leadingSeparator = false)
    {
        var b = Builder;
        int Sep(int to) => separator is null ? to : separator(to);
        // After k items: Count(k) is the fragment; built from the last k back to 0.
        int after; // fragment after `upto` items
        int upto;
        if (max == int.MaxValue)
        {
            upto = leadingSeparator ? min : Math.Max(min, 1);
            int loop = b.Placeholder();
            b.SetTargets(loop, next, Sep(b.Call(itemRule, loop)));
            after = loop;
        }
        else
        {
            upto = max;
            after = next;
        }
        for (int k = upto - 1; k >= 0; k--)
        {
            int more = b.Call(itemRule, after);
            if (k > 0 || leadingSeparator) more = Sep(more);
            after = k >= min ? b.Split(next, more) : more;
        }
        return after;
    }

    /// <summary>At most one space.</summary>
    public int Space(int next) => Builder.Split(next, Builder.Byte((byte)' ', next));

    /// <summary>Exactly the UTF-8 bytes of <paramref name="text"/>.</summary>
    public int Text(string text, int next) => Builder.Bytes(Encoding.UTF8.GetBytes(text), next);

    /// <summary>Any JSON value (objects and arrays nest through calls).</summary>
    public int AnyValue(int next) => Builder.Call(AnyValueRule(), next);

    /// <summary>Any JSON object.</summary>
    public int AnyObject(int next)
    {
        var b = Builder;
        int rule = Rule("object", end =>
        {
            // '{' ( '}' | member (',' sp member)* '}' ), member = string ':' sp value
            int close = b.Byte((byte)'}', end);
            int loop = b.Placeholder();
            int member = String(b.Byte((byte)':', Space(AnyValue(loop))));
            b.SetTargets(loop, close, b.Byte((byte)',', Space(member)));
            return b.Byte((byte)'{', b.Split(close, member));
        });
        return b.Call(rule, next);
    }

    /// <summary>Any JSON array.</summary>
    public int AnyArray(int next)
    {
        var b = Builder;
        int rule = Rule("array", end =>
        {
            int close = b.Byte((byte)']', end);
            int loop = b.Placeholder();
            int item = AnyValue(loop);
            b.SetTargets(loop, close, b.Byte((byte)',', Space(item)));
            return b.Byte((byte)'[', b.Split(close, item));
        });
        return b.Call(rule, next);
    }

    /// <summary>The rule of any JSON value.</summary>
    public int AnyValueRule() => Rule("value", end => Builder.Split(
        AnyObject(end), AnyArray(end), String(end), Number(integer: false, end),
        Text("true", end), Text("false", end), Text("null", end)));

    /// <summary>A JSON string of <paramref name="minLength"/> to <paramref name="maxLength"/> characters (code points).</summary>
    public int String(int next, int minLength = 0, int maxLength = int.MaxValue)
    {
        var b = Builder;
        if (minLength == 0 && maxLength == int.MaxValue)
        {
            int rule = Rule("string", end =>
            {
                int loop = b.Placeholder();
                b.SetTargets(loop, b.Byte((byte)'"', end), b.Call(CharacterRule(), loop));
                return b.Byte((byte)'"', loop);
            });
            return b.Call(rule, next);
        }
        int body = Repeat(CharacterRule(), minLength, maxLength, null, b.Byte((byte)'"', next));
        return b.Byte((byte)'"', body);
    }

    /// <summary>One character of a JSON string: valid UTF-8 other than <c>"</c>, <c>\</c> and controls, or an escape (no lone surrogates).</summary>
    private int CharacterRule() => Rule("char", end =>
    {
        var b = Builder;
        int Cont(int to) => b.Range(0x80, 0xBF, to);
        int hex3 = Hex(Hex(Hex(end)));
        int unicode = b.Split(
            b.Range((byte)'0', (byte)'9', hex3), b.Range((byte)'a', (byte)'c', hex3), b.Range((byte)'A', (byte)'C', hex3),
            b.Range((byte)'e', (byte)'f', hex3), b.Range((byte)'E', (byte)'F', hex3),
            b.Byte((byte)'d', b.Range((byte)'0', (byte)'7', Hex(Hex(end)))), b.Byte((byte)'D', b.Range((byte)'0', (byte)'7', Hex(Hex(end)))));
        var escapes = new List<int>();
        foreach (char c in "\"\\/bfnrt") escapes.Add(b.Byte((byte)c, end));
        escapes.Add(b.Byte((byte)'u', unicode));
        return b.Split(
            b.Range(0x20, 0x21, end), b.Range(0x23, 0x5B, end), b.Range(0x5D, 0x7F, end),
            b.Byte((byte)'\\', b.Split([.. escapes])),
            b.Range(0xC2, 0xDF, Cont(end)),
            b.Byte(0xE0, b.Range(0xA0, 0xBF, Cont(end))),
            b.Range(0xE1, 0xEC, Cont(Cont(end))),
            b.Byte(0xED, b.Range(0x80, 0x9F, Cont(end))),
            b.Range(0xEE, 0xEF, Cont(Cont(end))),
            b.Byte(0xF0, b.Range(0x90, 0xBF, Cont(Cont(end)))),
            b.Range(0xF1, 0xF3, Cont(Cont(Cont(end)))),
            b.Byte(0xF4, b.Range(0x80, 0x8F, Cont(Cont(end)))));
    });

    private int Hex(int next) => Builder.Split(
        Builder.Range((byte)'0', (byte)'9', next), Builder.Range((byte)'a', (byte)'f', next), Builder.Range((byte)'A', (byte)'F', next));

    /// <summary>A JSON number with bounded digits: <c>-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?</c>, or an integer only.</summary>
    public int Number(bool integer, int next)
    {
        var b = Builder;
        return b.Call(Rule(integer ? "integer" : "number", end =>
        {
            int tail = end;
            if (!integer)
            {
                int exponent = b.Split(b.Byte((byte)'e', Sign(end)), b.Byte((byte)'E', Sign(end)));
                int afterFraction = b.Split(end, exponent);
                int fraction = b.Byte((byte)'.', Digits(1, MaxFractionDigits, afterFraction));
                tail = b.Split(end, fraction, exponent);
                int Sign(int to) => b.Split(Digits(1, MaxExponentDigits, to), b.Byte((byte)'+', Digits(1, MaxExponentDigits, to)), b.Byte((byte)'-', Digits(1, MaxExponentDigits, to)));
            }
            int magnitude = b.Split(b.Byte((byte)'0', tail), b.Range((byte)'1', (byte)'9', Digits(0, MaxIntegerDigits - 1, tail)));
            return b.Split(magnitude, b.Byte((byte)'-', magnitude));
        }), next);
    }

    private int Digits(int min, int max, int next)
    {
        int after = next;
        for (int k = max - 1; k >= 0; k--)
        {
            int digit = Builder.Range((byte)'0', (byte)'9', after);
            after = k >= min ? Builder.Split(next, digit) : digit;
        }
        return after;
    }
}
