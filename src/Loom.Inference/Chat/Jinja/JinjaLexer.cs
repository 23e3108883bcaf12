using System.Globalization;
using System.Text;

namespace Loom.Inference.Chat.Jinja;

internal enum TokenKind { Name, String, Integer, Float, Operator, End }

internal readonly record struct Token(TokenKind Kind, string Text, object? Value, int Line)
{
    public bool Is(string text) => (Kind == TokenKind.Operator || Kind == TokenKind.Name) && Text == text;
}

internal enum SegmentKind { Text, Output, Statement }

internal sealed record Segment(SegmentKind Kind, string Text, List<Token> Tokens, int Line);

/// <summary>
/// Splits a template into text, <c>{{ }}</c> and <c>{% %}</c> segments (comments dropped), applying
/// whitespace control (<c>-</c>), <c>trim_blocks</c> and <c>lstrip_blocks</c> as transformers renders chat templates.
/// </summary>
internal static class JinjaLexer
{
    public static List<Segment> Split(string source)
    {
        var segments = new List<Segment>();
        var text = new StringBuilder();
        int i = 0, line = 1;
        bool trimNextLeading = false, dropNextNewline = false;

        void FlushText(bool stripTrailing, bool lstrip, int tagStart)
        {
            string t = text.ToString();
            text.Clear();
            if (stripTrailing) t = t.TrimEnd();
            else if (lstrip)
            {
                // lstrip_blocks: only blanks between the line's start (in the source) and the tag are removed.
                int k = tagStart - 1;
                while (k >= 0 && source[k] is ' ' or '\t') k--;
                if (k < 0 || source[k] == '\n') t = t.TrimEnd(' ', '\t');
            }
            if (t.Length > 0) segments.Add(new Segment(SegmentKind.Text, t, [], line));
        }

        while (i < source.Length)
        {
            int open = source.IndexOf('{', i);
            while (open >= 0 && open + 1 < source.Length && source[open + 1] is not ('{' or '%' or '#'))
                open = source.IndexOf('{', open + 1);
            if (open < 0 || open + 1 >= source.Length) { AppendText(source[i..]); break; }
            AppendText(source[i..open]);
            char kind = source[open + 1];
            int p = open + 2;
            bool minus = p < source.Length && source[p] == '-';
            bool plus = p < source.Length && source[p] == '+';
            if (minus || plus) p++;
            FlushText(minus, kind != '{' && !plus, open);
            int tagLine = line;

            if (kind == '#')
            {
                int close = source.IndexOf("#}", p, StringComparison.Ordinal);
                if (close < 0) throw new FormatException($"chat template line {tagLine}: a comment is not closed with #}}");
                bool closeMinus = close > p && source[close - 1] == '-';
                line += Count(source, open, close + 2);
                i = close + 2;
                trimNextLeading = closeMinus;
                dropNextNewline = !closeMinus;
                continue;
            }

            var tokens = Tokenize(source, ref p, ref line, kind == '{' ? '}' : '%', out bool rightMinus, out bool rightPlus);
            i = p;
            if (kind == '%' && tokens.Count > 0 && tokens[0].Is("raw"))
            {
                int end = FindEndRaw(source, i, out int after, out bool endLeftMinus, out bool endRightMinus);
                if (end < 0) throw new FormatException($"chat template line {tagLine}: {{% raw %}} has no {{% endraw %}}");
                string raw = source[i..end];
                if (rightMinus) raw = raw.TrimStart();
                else if (raw.StartsWith('\n')) raw = raw[1..];
                if (endLeftMinus) raw = raw.TrimEnd();
                text.Append(raw);
                FlushText(false, false, 0);
                line += Count(source, i, after);
                i = after;
                trimNextLeading = endRightMinus;
                dropNextNewline = !endRightMinus;
                continue;
            }
            segments.Add(new Segment(kind == '{' ? SegmentKind.Output : SegmentKind.Statement, "", tokens, tagLine));
            trimNextLeading = rightMinus;
            dropNextNewline = kind == '%' && !rightMinus && !rightPlus;
        }
        FlushText(false, false, 0);
        return segments;

        void AppendText(string t)
        {
            line += t.Count(c => c == '\n');
            if (trimNextLeading) t = t.TrimStart();
            else if (dropNextNewline)
            {
                if (t.StartsWith('\n')) t = t[1..];
                else if (t.StartsWith("\r\n", StringComparison.Ordinal)) t = t[2..];
            }
            trimNextLeading = dropNextNewline = false;
            text.Append(t);
        }
    }

    private static int Count(string s, int from, int to)
    {
        int n = 0;
        for (int k = from; k < to && k < s.Length; k++) if (s[k] == '\n') n++;
        return n;
    }

    private static int FindEndRaw(string source, int from, out int after, out bool leftMinus, out bool rightMinus)
    {
        int k = from;
        while ((k = source.IndexOf("{%", k, StringComparison.Ordinal)) >= 0)
        {
            int p = k + 2;
            leftMinus = p < source.Length && source[p] == '-';
            if (leftMinus || (p < source.Length && source[p] == '+')) p++;
            while (p < source.Length && char.IsWhiteSpace(source[p])) p++;
            if (string.CompareOrdinal(source, p, "endraw", 0, 6) == 0)
            {
                p += 6;
                while (p < source.Length && char.IsWhiteSpace(source[p])) p++;
                rightMinus = p < source.Length && source[p] == '-';
                if (rightMinus) p++;
                if (string.CompareOrdinal(source, p, "%}", 0, 2) == 0) { after = p + 2; return k; }
            }
            k += 2;
        }
        after = -1;
        leftMinus = rightMinus = false;
        return -1;
    }

    private static readonly string[] Operators = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="];

    private static List<Token> Tokenize(string s, ref int p, ref int line, char closer, out bool rightMinus, out bool rightPlus)
    {
        var tokens = new List<Token>();
        int startLine = line;
        int depth = 0;
        while (true)
        {
            while (p < s.Length && char.IsWhiteSpace(s[p])) { if (s[p] == '\n') line++; p++; }
            if (p >= s.Length) throw new FormatException($"chat template line {startLine}: a tag is not closed with {closer}}}");
            char c = s[p];
            if (depth == 0 && (c is '-' or '+') && At(s, p + 1, closer))
            {
                rightMinus = c == '-';
                rightPlus = c == '+';
                p += 3;
                return tokens;
            }
            if (depth == 0 && At(s, p, closer))
            {
                rightMinus = rightPlus = false;
                p += 2;
                return tokens;
            }
            if (char.IsLetter(c) || c == '_')
            {
                int start = p;
                while (p < s.Length && (char.IsLetterOrDigit(s[p]) || s[p] == '_')) p++;
                tokens.Add(new Token(TokenKind.Name, s[start..p], null, line));
            }
            else if (char.IsDigit(c))
            {
                int start = p;
                while (p < s.Length && (char.IsDigit(s[p]) || s[p] == '_')) p++;
                bool isFloat = false;
                if (p + 1 < s.Length && s[p] == '.' && char.IsDigit(s[p + 1]))
                {
                    isFloat = true;
                    p++;
                    while (p < s.Length && char.IsDigit(s[p])) p++;
                }
                string number = s[start..p].Replace("_", "", StringComparison.Ordinal);
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, number, double.Parse(number, CultureInfo.InvariantCulture), line)
                    : new Token(TokenKind.Integer, number, long.Parse(number, CultureInfo.InvariantCulture), line));
            }
            else if (c is '\'' or '"')
            {
                var value = new StringBuilder();
                p++;
                while (true)
                {
                    if (p >= s.Length) throw new FormatException($"chat template line {line}: a string is not closed with {c}");
                    char d = s[p++];
                    if (d == c) break;
                    if (d == '\n') line++;
                    if (d != '\\' || p >= s.Length) { value.Append(d); continue; }
                    char e = s[p++];
                    switch (e)
                    {
                        case 'n': value.Append('\n'); break;
                        case 't': value.Append('\t'); break;
                        case 'r': value.Append('\r'); break;
                        case '\\': value.Append('\\'); break;
                        case '\'': value.Append('\''); break;
                        case '"': value.Append('"'); break;
                        case 'u' when p + 4 <= s.Length:
                            value.Append((char)int.Parse(s.AsSpan(p, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                            p += 4;
                            break;
                        default: value.Append('\\').Append(e); break;
                    }
                }
                tokens.Add(new Token(TokenKind.String, value.ToString(), value.ToString(), line));
            }
            else
            {
                int at = p;
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(s, at, o, 0, o.Length) == 0);
                if (op is null) throw new FormatException($"chat template line {line}: unexpected character '{c}'");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                tokens.Add(new Token(TokenKind.Operator, op, null, line));
                p += op.Length;
            }
        }
    }

    private static bool At(string s, int p, char closer) => p + 1 < s.Length && s[p] == closer && s[p + 1] == '}';
}
