using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Inference.Chat;

/// <summary>
/// A piece of a reply as <see cref="ReplyParser"/> splits it: thinking text, answer text, the start of a tool call
/// (its index, id and name), or a piece of a call's arguments. Exactly one kind of field is set.
/// </summary>
/// <param name="Reasoning">Thinking text.</param>
/// <param name="Content">Answer text (outside tool calls).</param>
/// <param name="CallIndex">The call a start or an arguments piece belongs to, from 0.</param>
/// <param name="CallId">A call's id (its start only).</param>
/// <param name="CallName">A call's function name (its start only).</param>
/// <param name="Arguments">A piece of a call's arguments JSON.</param>
public sealed record ReplyPiece(string? Reasoning = null, string? Content = null, int? CallIndex = null, string? CallId = null, string? CallName = null, string? Arguments = null);

/// <summary>A whole reply: its thinking (null when thinking was off), its answer text and its tool calls.</summary>
/// <param name="Reasoning">The thinking segment's text, without its markers; null when the reply had none.</param>
/// <param name="Content">The text outside thinking and calls.</param>
/// <param name="ToolCalls">The calls, in order.</param>
public sealed record ParsedReply(string? Reasoning, string Content, IReadOnlyList<ToolCall> ToolCalls);

/// <summary>
/// Splits a reply's text as it streams in: a leading thinking segment (when the prompt opened one) up to
/// <see cref="ChatMarkers.ThinkingEnd"/>, answer text, and <c>&lt;tool_call&gt;{"name": …, "arguments": …}&lt;/tool_call&gt;</c> blocks,
/// whose arguments stream in pieces. Text that may be the start of a marker is held back until it is known. A block that
/// is not a call (no name, not JSON) stays in the text. Not thread-safe; one per reply.
/// </summary>
public sealed partial class ReplyParser
{
    private enum State { Thinking, AnswerStart, Answer, Call }

    private readonly StringBuilder buffer = new();
    private State state;
    private int calls;
    private bool callStarted;
    private int argumentsStart, argumentsSent;

    /// <summary>Creates a parser; <paramref name="thinking"/>: the reply opens with a thinking segment.</summary>
    public ReplyParser(bool thinking) => state = thinking ? State.Thinking : State.Answer;

    /// <summary>The calls found so far.</summary>
    public int ToolCallCount => calls;

    /// <summary>Parses a whole reply.</summary>
    public static ParsedReply Parse(string text, bool thinking)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parser = new ReplyParser(thinking);
        var pieces = parser.Push(text).Concat(parser.Finish()).ToList();
        StringBuilder? reasoning = thinking ? new StringBuilder() : null;
        var content = new StringBuilder();
        var calls = new List<(string Id, string Name, StringBuilder Arguments)>();
        foreach (var piece in pieces)
        {
            if (piece.Reasoning is not null) reasoning!.Append(piece.Reasoning);
            if (piece.Content is not null) content.Append(piece.Content);
            if (piece.CallName is not null) calls.Add((piece.CallId!, piece.CallName, new StringBuilder()));
            if (piece.Arguments is not null) calls[piece.CallIndex!.Value].Arguments.Append(piece.Arguments);
        }
        return new ParsedReply(reasoning?.ToString(), content.ToString(), [.. calls.Select(c => new ToolCall(c.Id, c.Name, c.Arguments.ToString()))]);
    }

    /// <summary>The pieces that <paramref name="text"/>, the reply's next text, completes.</summary>
    public IEnumerable<ReplyPiece> Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        buffer.Append(text);
        var pieces = new List<ReplyPiece>();
        while (Step(pieces, final: false))
        {
        }
        return pieces;
    }

    /// <summary>The pieces held back, at the reply's end (an unclosed call keeps the arguments it has).</summary>
    public IEnumerable<ReplyPiece> Finish()
    {
        var pieces = new List<ReplyPiece>();
        while (Step(pieces, final: true))
        {
        }
        string rest = buffer.ToString();
        buffer.Clear();
        switch (state)
        {
            case State.Thinking:
                if (rest.Length > 0) pieces.Add(new ReplyPiece(Reasoning: rest));
                break;
            case State.Answer or State.AnswerStart:
                if (rest.Length > 0 && !(calls > 0 && rest.Trim().Length == 0)) pieces.Add(new ReplyPiece(Content: rest));
                break;
            case State.Call when callStarted:
                int end = UnclosedArgumentsEnd(rest);
                if (end > argumentsSent) pieces.Add(new ReplyPiece(CallIndex: calls - 1, Arguments: rest[argumentsSent..end]));
                break;
            case State.Call:
                pieces.Add(new ReplyPiece(Content: ChatMarkers.ToolCallStart + rest));
                break;
        }
        return pieces;
    }

    /// <summary>Handles what the buffer holds in the current state; true when the state changed and there may be more to do.</summary>
    private bool Step(List<ReplyPiece> pieces, bool final)
    {
        string text = buffer.ToString();
        switch (state)
        {
            case State.Thinking:
            {
                int end = text.IndexOf(ChatMarkers.ThinkingEnd, StringComparison.Ordinal);
                if (end >= 0)
                {
                    if (end > 0) pieces.Add(new ReplyPiece(Reasoning: text[..end].TrimEnd('\n')));
                    Consume(end + ChatMarkers.ThinkingEnd.Length);
                    state = State.AnswerStart;
                    return true;
                }
                int safe = final ? text.Length : text.Length - HeldBack(text, ChatMarkers.ThinkingEnd, trailingNewlines: true);
                if (safe > 0)
                {
                    pieces.Add(new ReplyPiece(Reasoning: text[..safe]));
                    Consume(safe);
                }
                return false;
            }
            case State.AnswerStart:
            {
                int start = 0;
                while (start < text.Length && char.IsWhiteSpace(text[start])) start++;
                Consume(start);
                if (start == text.Length) return false;
                state = State.Answer;
                return true;
            }
            case State.Answer:
            {
                int open = text.IndexOf(ChatMarkers.ToolCallStart, StringComparison.Ordinal);
                if (open >= 0)
                {
                    string before = calls > 0 && text[..open].Trim().Length == 0 ? "" : text[..open]; // the newline between parallel calls
                    if (before.Length > 0) pieces.Add(new ReplyPiece(Content: before));
                    Consume(open + ChatMarkers.ToolCallStart.Length);
                    state = State.Call;
                    callStarted = false;
                    argumentsStart = argumentsSent = 0;
                    return true;
                }
                int safe = final ? text.Length : text.Length - HeldBack(text, ChatMarkers.ToolCallStart, trailingNewlines: calls > 0);
                if (safe > 0)
                {
                    pieces.Add(new ReplyPiece(Content: text[..safe]));
                    Consume(safe);
                }
                return false;
            }
            case State.Call:
            {
                int close = text.IndexOf(ChatMarkers.ToolCallEnd, StringComparison.Ordinal);
                string body = close >= 0 ? text[..close] : text;
                if (!callStarted && CallHeader().Match(body) is { Success: true } header)
                {
                    pieces.Add(new ReplyPiece(CallIndex: calls, CallId: ChatMarkers.NewCallId(), CallName: JsonSerializer.Deserialize<string>('"' + header.Groups[1].Value + '"')));
                    calls++;
                    callStarted = true;
                    argumentsStart = argumentsSent = header.Length;
                }
                if (close >= 0)
                {
                    if (callStarted)
                    {
                        int end = body.TrimEnd().Length;
                        if (end > argumentsStart && body[end - 1] == '}') end--; // the call object's own closing brace
                        end = Math.Max(argumentsStart, body[..end].TrimEnd().Length);
                        if (end > argumentsSent) pieces.Add(new ReplyPiece(CallIndex: calls - 1, Arguments: body[argumentsSent..end]));
                    }
                    else if (WholeCall(body) is { } call)
                    {
                        pieces.Add(new ReplyPiece(CallIndex: calls, CallId: ChatMarkers.NewCallId(), CallName: call.Name));
                        pieces.Add(new ReplyPiece(CallIndex: calls, Arguments: call.Arguments));
                        calls++;
                    }
                    else pieces.Add(new ReplyPiece(Content: ChatMarkers.ToolCallStart + body + ChatMarkers.ToolCallEnd));
                    Consume(close + ChatMarkers.ToolCallEnd.Length);
                    state = State.Answer;
                    return true;
                }
                if (callStarted)
                {
                    int safe = SafeArgumentsEnd(text);
                    if (safe > argumentsSent)
                    {
                        pieces.Add(new ReplyPiece(CallIndex: calls - 1, Arguments: text[argumentsSent..safe]));
                        argumentsSent = safe;
                    }
                }
                return false;
            }
        }
        return false;
    }

    /// <summary>How far a call's arguments may be sent: not the last <c>}</c> when only whitespace or the start of <c>&lt;/tool_call&gt;</c> follows it.</summary>
    private int SafeArgumentsEnd(string text)
    {
        int brace = text.LastIndexOf('}');
        if (brace >= argumentsSent)
        {
            string after = text[(brace + 1)..].TrimStart();
            if (ChatMarkers.ToolCallEnd.StartsWith(after, StringComparison.Ordinal)) return brace;
        }
        return text.Length - HeldBack(text, ChatMarkers.ToolCallEnd, trailingNewlines: false);
    }

    /// <summary>
    /// Where an unclosed call's arguments end: before the call object's own closing brace (and a partial closing marker)
    /// when what precedes it is whole JSON, else at the end.
    /// </summary>
    private int UnclosedArgumentsEnd(string text)
    {
        string body = text.TrimEnd();
        int held = HeldBack(body, ChatMarkers.ToolCallEnd, trailingNewlines: false);
        body = body[..^held].TrimEnd();
        if (body.Length > argumentsStart + 1 && body[^1] == '}' && IsJson(body[argumentsStart..^1]) && body.Length - 1 >= argumentsSent) return body.Length - 1;
        return text.Length;
    }

    private static bool IsJson(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that may begin <paramref name="marker"/> (optionally after newlines).</summary>
    private static int HeldBack(string text, string marker, bool trailingNewlines)
    {
        for (int n = Math.Min(text.Length, marker.Length - 1); n > 0; n--)
        {
            if (marker.StartsWith(text[^n..], StringComparison.Ordinal))
            {
                int start = text.Length - n;
                while (trailingNewlines && start > 0 && text[start - 1] == '\n') start--;
                return text.Length - start;
            }
        }
        if (!trailingNewlines) return 0;
        int newlines = 0;
        while (newlines < text.Length && text[^(newlines + 1)] == '\n') newlines++;
        return newlines;
    }

    private static (string Name, string Arguments)? WholeCall(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
                && root.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.Object)
                return (name.GetString()!, arguments.GetRawText());
        }
        catch (JsonException)
        {
        }
        return null;
    }

    private void Consume(int count) => buffer.Remove(0, count);

    [GeneratedRegex("""^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)""")]
    private static partial Regex CallHeader();
}
