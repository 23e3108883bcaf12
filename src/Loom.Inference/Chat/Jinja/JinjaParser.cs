namespace Loom.Inference.Chat.Jinja;

internal abstract record Node;
internal sealed record TextNode(string Text) : Node;
internal sealed record OutputNode(Expr Value) : Node;
internal sealed record IfNode(List<(Expr Test, List<Node> Body)> Branches, List<Node>? Else) : Node;
internal sealed record ForNode(List<string> Targets, Expr Items, Expr? Filter, List<Node> Body, List<Node>? Else) : Node;
internal sealed record SetNode(string Name, string? Attribute, List<string>? Unpack, Expr? Value, List<Node>? Body) : Node;
internal sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body) : Node;
internal sealed record LoopControlNode(bool Break) : Node;
internal sealed record ScopeNode(List<Node> Body) : Node;

internal abstract record Expr(int Line);
internal sealed record LiteralExpr(object? Value, int Line) : Expr(Line);
internal sealed record NameExpr(string Name, int Line) : Expr(Line);
internal sealed record AttrExpr(Expr Target, string Name, int Line) : Expr(Line);
internal sealed record ItemExpr(Expr Target, Expr Key, int Line) : Expr(Line);
internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line) : Expr(Line);
internal sealed record CallExpr(Expr Target, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Line) : Expr(Line);
internal sealed record FilterExpr(Expr Target, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Line) : Expr(Line);
internal sealed record TestExpr(Expr Target, string Name, List<Expr> Args, bool Negated, int Line) : Expr(Line);
internal sealed record UnaryExpr(string Op, Expr Operand, int Line) : Expr(Line);
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line) : Expr(Line);
internal sealed record CondExpr(Expr Test, Expr Then, Expr? Else, int Line) : Expr(Line);
internal sealed record ListExpr(List<Expr> Items, int Line) : Expr(Line);
internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Line) : Expr(Line);

/// <summary>Parses lexed segments into a tree of nodes.</summary>
internal sealed class JinjaParser
{
    private readonly List<Segment> segments;
    private int position;

    private JinjaParser(List<Segment> segments) => this.segments = segments;

    public static List<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Split(source));
        var body = parser.Block([], out string? end, out _);
        if (end is not null) throw new FormatException($"chat template: unexpected {{% {end} %}}");
        return body;
    }

    /// <summary>Nodes until a statement whose keyword is in <paramref name="ends"/> (returned with its token stream) or the end.</summary>
    private List<Node> Block(string[] ends, out string? end, out TokenStream? endTokens)
    {
        var nodes = new List<Node>();
        while (position < segments.Count)
        {
            var segment = segments[position++];
            switch (segment.Kind)
            {
                case SegmentKind.Text: nodes.Add(new TextNode(segment.Text)); break;
                case SegmentKind.Output:
                {
                    var tokens = new TokenStream(segment.Tokens, segment.Line);
                    nodes.Add(new OutputNode(new ExpressionParser(tokens).Expression()));
                    tokens.ExpectEnd();
                    break;
                }
                default:
                {
                    var tokens = new TokenStream(segment.Tokens, segment.Line);
                    string keyword = tokens.Name("a statement keyword");
                    if (ends.Contains(keyword)) { end = keyword; endTokens = tokens; return nodes; }
                    nodes.Add(Statement(keyword, tokens));
                    break;
                }
            }
        }
        end = null;
        endTokens = null;
        if (ends.Length > 0) throw new FormatException($"chat template: the template ends before {{% {ends[^1]} %}}");
        return nodes;
    }

    private Node Statement(string keyword, TokenStream tokens)
    {
        int line = tokens.Line;
        switch (keyword)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                List<Node>? otherwise = null;
                var test = new ExpressionParser(tokens).Expression();
                tokens.ExpectEnd();
                while (true)
                {
                    var body = Block(["elif", "else", "endif"], out string? end, out var next);
                    branches.Add((test, body));
                    if (end == "elif") { test = new ExpressionParser(next!).Expression(); next!.ExpectEnd(); continue; }
                    next!.ExpectEnd();
                    if (end == "else")
                    {
                        otherwise = Block(["endif"], out _, out var endif);
                        endif!.ExpectEnd();
                    }
                    return new IfNode(branches, otherwise);
                }
            }
            case "for":
            {
                var targets = new List<string> { tokens.Name("a loop variable") };
                while (tokens.Accept(",")) targets.Add(tokens.Name("a loop variable"));
                tokens.Expect("in");
                var parser = new ExpressionParser(tokens);
                var items = parser.Expression(allowConditional: false);
                Expr? filter = tokens.Accept("if") ? parser.Expression(allowConditional: false) : null;
                tokens.Accept("recursive");
                tokens.ExpectEnd();
                var body = Block(["else", "endfor"], out string? end, out var next);
                next!.ExpectEnd();
                List<Node>? otherwise = null;
                if (end == "else")
                {
                    otherwise = Block(["endfor"], out _, out var endfor);
                    endfor!.ExpectEnd();
                }
                return new ForNode(targets, items, filter, body, otherwise);
            }
            case "set":
            {
                string name = tokens.Name("a variable name");
                string? attribute = null;
                List<string>? unpack = null;
                if (tokens.Accept(".")) attribute = tokens.Name("an attribute name");
                else if (tokens.Peek.Is(","))
                {
                    unpack = [name];
                    while (tokens.Accept(",")) unpack.Add(tokens.Name("a variable name"));
                }
                if (tokens.Accept("="))
                {
                    var value = new ExpressionParser(tokens).Expression();
                    tokens.ExpectEnd();
                    return new SetNode(name, attribute, unpack, value, null);
                }
                tokens.ExpectEnd();
                var body = Block(["endset"], out _, out var endset);
                endset!.ExpectEnd();
                return new SetNode(name, attribute, unpack, null, body);
            }
            case "macro":
            {
                string name = tokens.Name("a macro name");
                var parameters = new List<(string, Expr?)>();
                tokens.Expect("(");
                while (!tokens.Accept(")"))
                {
                    string parameter = tokens.Name("a parameter name");
                    Expr? fallback = tokens.Accept("=") ? new ExpressionParser(tokens).Expression() : null;
                    parameters.Add((parameter, fallback));
                    if (!tokens.Accept(",")) { tokens.Expect(")"); break; }
                }
                tokens.ExpectEnd();
                var body = Block(["endmacro"], out _, out var endmacro);
                endmacro!.ExpectEnd();
                return new MacroNode(name, parameters, body);
            }
            case "break" or "continue":
                tokens.ExpectEnd();
                return new LoopControlNode(keyword == "break");
            case "generation":
            {
                tokens.ExpectEnd();
                var body = Block(["endgeneration"], out _, out var endgeneration);
                endgeneration!.ExpectEnd();
                return new ScopeNode(body);
            }
            default:
                throw new FormatException($"chat template line {line}: {{% {keyword} %}} is not supported (or has no matching opening tag)");
        }
    }
}

/// <summary>The tokens of one tag.</summary>
internal sealed class TokenStream(List<Token> tokens, int line)
{
    private int position;

    public int Line => position < tokens.Count ? tokens[position].Line : line;

    public Token Peek => position < tokens.Count ? tokens[position] : new Token(TokenKind.End, "", null, line);

    public Token PeekAt(int offset) => position + offset < tokens.Count ? tokens[position + offset] : new Token(TokenKind.End, "", null, line);

    public Token Next()
    {
        var token = Peek;
        if (position < tokens.Count) position++;
        return token;
    }

    public bool Accept(string text)
    {
        if (!Peek.Is(text)) return false;
        position++;
        return true;
    }

    public void Expect(string text)
    {
        if (!Accept(text)) throw Error($"expected '{text}'");
    }

    public string Name(string what)
    {
        var token = Next();
        return token.Kind == TokenKind.Name ? token.Text : throw Error($"expected {what}", token);
    }

    public void ExpectEnd()
    {
        if (Peek.Kind != TokenKind.End) throw Error("expected the end of the tag");
    }

    public FormatException Error(string message, Token? at = null)
    {
        var token = at ?? Peek;
        string found = token.Kind == TokenKind.End ? "the end of the tag" : $"'{token.Text}'";
        return new FormatException($"chat template line {token.Line}: {message}, found {found}");
    }
}

/// <summary>Jinja's expression grammar, loosest binding first.</summary>
internal sealed class ExpressionParser(TokenStream tokens)
{
    public Expr Expression(bool allowConditional = true)
    {
        var value = Or();
        if (allowConditional && tokens.Accept("if"))
        {
            var test = Or();
            Expr? otherwise = tokens.Accept("else") ? Expression() : null;
            return new CondExpr(test, value, otherwise, value.Line);
        }
        return value;
    }

    private Expr Or()
    {
        var left = And();
        while (tokens.Peek.Is("or")) { tokens.Next(); left = new BinaryExpr("or", left, And(), left.Line); }
        return left;
    }

    private Expr And()
    {
        var left = Not();
        while (tokens.Peek.Is("and")) { tokens.Next(); left = new BinaryExpr("and", left, Not(), left.Line); }
        return left;
    }

    private Expr Not()
    {
        if (tokens.Peek.Is("not")) { int line = tokens.Next().Line; return new UnaryExpr("not", Not(), line); }
        return Compare();
    }

    private Expr Compare()
    {
        var left = Concat();
        while (true)
        {
            var t = tokens.Peek;
            if (t.Kind == TokenKind.Operator && t.Text is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                tokens.Next();
                left = new BinaryExpr(t.Text, left, Concat(), left.Line);
            }
            else if (t.Is("in")) { tokens.Next(); left = new BinaryExpr("in", left, Concat(), left.Line); }
            else if (t.Is("not") && tokens.PeekAt(1).Is("in"))
            {
                tokens.Next();
                tokens.Next();
                left = new BinaryExpr("not in", left, Concat(), left.Line);
            }
            else return left;
        }
    }

    private Expr Concat()
    {
        var left = Sum();
        while (tokens.Accept("~")) left = new BinaryExpr("~", left, Sum(), left.Line);
        return left;
    }

    private Expr Sum()
    {
        var left = Product();
        while (tokens.Peek.Kind == TokenKind.Operator && tokens.Peek.Text is "+" or "-")
            left = new BinaryExpr(tokens.Next().Text, left, Product(), left.Line);
        return left;
    }

    private Expr Product()
    {
        var left = Unary();
        while (tokens.Peek.Kind == TokenKind.Operator && tokens.Peek.Text is "*" or "/" or "//" or "%")
            left = new BinaryExpr(tokens.Next().Text, left, Unary(), left.Line);
        return left;
    }

    private Expr Unary()
    {
        var t = tokens.Peek;
        if (t.Kind == TokenKind.Operator && t.Text is "-" or "+")
        {
            tokens.Next();
            return FilterChain(new UnaryExpr(t.Text, Unary(), t.Line));
        }
        return FilterChain(Power());
    }

    private Expr Power()
    {
        var left = Postfix(Primary());
        if (tokens.Accept("**")) return new BinaryExpr("**", left, Unary(), left.Line);
        return left;
    }

    private Expr FilterChain(Expr value)
    {
        while (true)
        {
            if (tokens.Accept("|"))
            {
                int line = tokens.Line;
                string name = tokens.Name("a filter name");
                while (tokens.Accept(".")) name += "." + tokens.Name("a filter name");
                var (args, kwargs) = tokens.Peek.Is("(") ? Arguments() : ([], []);
                value = new FilterExpr(value, name, args, kwargs, line);
            }
            else if (tokens.Peek.Is("is"))
            {
                int line = tokens.Next().Line;
                bool negated = tokens.Accept("not");
                var nameToken = tokens.Next();
                string name = nameToken.Kind == TokenKind.Name ? nameToken.Text
                    : nameToken.Kind == TokenKind.Operator && nameToken.Text is "==" or "!=" or "<" or ">" or "<=" or ">=" ? nameToken.Text
                    : throw tokens.Error("expected a test name", nameToken);
                var args = new List<Expr>();
                if (tokens.Peek.Is("(")) args = Arguments().Args;
                else if (tokens.Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || (tokens.Peek.Kind == TokenKind.Name && tokens.Peek.Text is not ("and" or "or" or "if" or "else" or "in" or "not" or "is")))
                    args.Add(Postfix(Primary()));
                value = new TestExpr(value, name, args, negated, line);
            }
            else return value;
        }
    }

    private Expr Postfix(Expr value)
    {
        while (true)
        {
            if (tokens.Accept("."))
            {
                var t = tokens.Next();
                value = t.Kind switch
                {
                    TokenKind.Name => new AttrExpr(value, t.Text, t.Line),
                    TokenKind.Integer => new ItemExpr(value, new LiteralExpr(t.Value, t.Line), t.Line),
                    _ => throw tokens.Error("expected an attribute name", t),
                };
            }
            else if (tokens.Peek.Is("["))
            {
                int line = tokens.Next().Line;
                Expr? start = null, stop = null, step = null;
                bool slice = false;
                if (!tokens.Peek.Is(":")) start = Expression();
                if (tokens.Accept(":"))
                {
                    slice = true;
                    if (!tokens.Peek.Is(":") && !tokens.Peek.Is("]")) stop = Expression();
                    if (tokens.Accept(":") && !tokens.Peek.Is("]")) step = Expression();
                }
                tokens.Expect("]");
                value = slice ? new SliceExpr(value, start, stop, step, line) : new ItemExpr(value, start!, line);
            }
            else if (tokens.Peek.Is("("))
            {
                var (args, kwargs) = Arguments();
                value = new CallExpr(value, args, kwargs, value.Line);
            }
            else return value;
        }
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) Arguments()
    {
        tokens.Expect("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!tokens.Accept(")"))
        {
            if (tokens.Peek.Kind == TokenKind.Name && tokens.PeekAt(1).Is("="))
            {
                string name = tokens.Next().Text;
                tokens.Next();
                kwargs.Add((name, Expression()));
            }
            else args.Add(Expression());
            if (!tokens.Accept(",")) { tokens.Expect(")"); break; }
        }
        return (args, kwargs);
    }

    private Expr Primary()
    {
        var t = tokens.Next();
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                string text = (string)t.Value!;
                while (tokens.Peek.Kind == TokenKind.String) text += (string)tokens.Next().Value!; // adjacent literals
                return new LiteralExpr(text, t.Line);
            }
            case TokenKind.Integer or TokenKind.Float: return new LiteralExpr(t.Value, t.Line);
            case TokenKind.Name:
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line),
                    "false" or "False" => new LiteralExpr(false, t.Line),
                    "none" or "None" => new LiteralExpr(null, t.Line),
                    _ => new NameExpr(t.Text, t.Line),
                };
            case TokenKind.Operator when t.Text == "(":
            {
                if (tokens.Accept(")")) return new ListExpr([], t.Line);
                var first = Expression();
                if (tokens.Accept(")")) return first;
                var items = new List<Expr> { first };
                while (tokens.Accept(",") && !tokens.Peek.Is(")")) items.Add(Expression());
                tokens.Expect(")");
                return new ListExpr(items, t.Line);
            }
            case TokenKind.Operator when t.Text == "[":
            {
                var items = new List<Expr>();
                while (!tokens.Accept("]"))
                {
                    items.Add(Expression());
                    if (!tokens.Accept(",")) { tokens.Expect("]"); break; }
                }
                return new ListExpr(items, t.Line);
            }
            case TokenKind.Operator when t.Text == "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!tokens.Accept("}"))
                {
                    var key = Expression();
                    tokens.Expect(":");
                    items.Add((key, Expression()));
                    if (!tokens.Accept(",")) { tokens.Expect("}"); break; }
                }
                return new DictExpr(items, t.Line);
            }
            default:
                throw tokens.Error("expected a value", t);
        }
    }
}
