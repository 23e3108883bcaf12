using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Inference.Constraints;

namespace Loom.Inference.Chat;

/// <summary>How a reply may call tools: OpenAI's <c>tool_choice</c>.</summary>
public enum ToolChoiceMode
{
    /// <summary>The model chooses: free text, but a call it starts (<see cref="ChatMarkers.ToolCallStart"/>) is constrained to a valid call.</summary>
    Auto,

    /// <summary>No calls: the tools are not offered.</summary>
    None,

    /// <summary>The reply is one call (or, with parallel calls, one or more) to any of the tools.</summary>
    Required,

    /// <summary>The reply is one call to <see cref="ToolCallPolicy.FunctionName"/>.</summary>
    Function,
}

/// <summary>A request's tools and how its reply may call them.</summary>
public sealed record ToolCallPolicy
{
    /// <summary>The functions offered, at least one; names are unique.</summary>
    public required IReadOnlyList<ToolDeclaration> Tools
    {
        get;
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.Count == 0) throw new ArgumentException("a tool policy needs at least one tool");
            var duplicate = value.GroupBy(t => t.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null) throw new ArgumentException($"two tools are named '{duplicate.Key}': tool names must be unique");
            field = value;
        }
    }

    /// <summary>How the reply may call them.</summary>
    public ToolChoiceMode Mode { get; init; } = ToolChoiceMode.Auto;

    /// <summary>The function a <see cref="ToolChoiceMode.Function"/> reply calls; null otherwise.</summary>
    public string? FunctionName { get; init; }

    /// <summary>Whether a reply may hold several calls (OpenAI's <c>parallel_tool_calls</c>, default true).</summary>
    public bool ParallelCalls { get; init; } = true;

    /// <summary>The most calls one reply may hold when <see cref="ParallelCalls"/> is on.</summary>
    public int MaxParallelCalls
    {
        get;
        init => field = value >= 1 ? value : throw new ArgumentException($"MaxParallelCalls = {value}: use at least 1");
    } = 8;
}

/// <summary>
/// Builds the grammars and token constraints of tool calls and thinking budgets over one vocabulary. A call is
/// <c>&lt;tool_call&gt;{"name": "NAME", "arguments": ARGS}&lt;/tool_call&gt;</c> where NAME is one of the tools and ARGS follows
/// that tool's parameter schema; parallel calls are separated by a newline.
/// </summary>
public sealed class ChatConstraintFactory
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> crossing = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte[]> markerBytes = new(StringComparer.Ordinal);

    /// <summary>Creates the factory of a vocabulary's grammar compiler.</summary>
    public ChatConstraintFactory(TokenConstraintFactory grammars)
    {
        Grammars = grammars ?? throw new ArgumentNullException(nameof(grammars));
    }

    /// <summary>The grammar compiler.</summary>
    public TokenConstraintFactory Grammars { get; }

    /// <summary>The vocabulary.</summary>
    public IVocabulary Vocabulary => Grammars.Vocabulary;

    /// <summary>The grammar of a tool's arguments: its schema's JSON, or any JSON object when a non-strict schema cannot be enforced.</summary>
    /// <exception cref="SchemaException">A strict tool's schema is malformed or unsupported.</exception>
    public static Grammar Arguments(ToolDeclaration tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        try
        {
            return Grammar.JsonSchema(tool.Parameters);
        }
        catch (SchemaException) when (!tool.Strict)
        {
            return Grammar.JsonObject();
        }
    }

    /// <summary>What follows <see cref="ChatMarkers.ToolCallStart"/> in a call to one of <paramref name="tools"/>: the JSON body and the closing marker.</summary>
    /// <exception cref="ToolSchemaException">A strict tool's schema cannot be enforced; it names the tool's index.</exception>
    public static Grammar CallBody(IReadOnlyList<ToolDeclaration> tools)
    {
        ArgumentNullException.ThrowIfNull(tools);
        var bodies = new Grammar[tools.Count];
        for (int i = 0; i < tools.Count; i++)
        {
            Grammar arguments;
            try
            {
                arguments = Arguments(tools[i]);
            }
            catch (SchemaException e)
            {
                throw new ToolSchemaException(i, e);
            }
            bodies[i] = Grammar.Sequence(Grammar.Literal($"{{\"name\": {JsonSerializer.Serialize(tools[i].Name)}, \"arguments\": "), arguments, Grammar.Literal("}"));
        }
        return Grammar.Sequence(bodies.Length == 1 ? bodies[0] : Grammar.Choice(bodies), Grammar.Literal(ChatMarkers.ToolCallEnd));
    }

    /// <summary>
    /// The grammar of a reply that must call (<see cref="ToolChoiceMode.Required"/> or <see cref="ToolChoiceMode.Function"/>), or null
    /// when the reply is free (<see cref="ToolChoiceMode.Auto"/>, <see cref="ToolChoiceMode.None"/>).
    /// </summary>
    /// <exception cref="ToolSchemaException">A strict tool's schema cannot be enforced.</exception>
    /// <exception cref="ArgumentException">The policy names a function it does not offer.</exception>
    public static Grammar? ForcedCalls(ToolCallPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        switch (policy.Mode)
        {
            case ToolChoiceMode.Required:
                var call = Grammar.Sequence(Grammar.Literal(ChatMarkers.ToolCallStart), CallBody(policy.Tools));
                return policy.ParallelCalls ? Grammar.Repeat(call, 1, policy.MaxParallelCalls, Grammar.Literal("\n")) : call;
            case ToolChoiceMode.Function:
                var tool = policy.Tools.FirstOrDefault(t => t.Name == policy.FunctionName)
                    ?? throw new ArgumentException($"the tool choice names '{policy.FunctionName}', which is not one of the tools ({string.Join(", ", policy.Tools.Select(t => t.Name))})");
                return Grammar.Sequence(Grammar.Literal(ChatMarkers.ToolCallStart), CallBody([tool]));
            default:
                return null;
        }
    }

    /// <summary>
    /// Checks every strict schema of the policy now (so a request is refused before it runs) and returns what
    /// <see cref="ForReply"/> needs.
    /// </summary>
    /// <exception cref="ToolSchemaException">A strict tool's schema cannot be enforced.</exception>
    /// <exception cref="ArgumentException">The policy names a function it does not offer.</exception>
    public static Grammar? Validate(ToolCallPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Mode == ToolChoiceMode.None) return null;
        _ = CallBody(policy.Tools);
        return ForcedCalls(policy);
    }

    /// <summary>
    /// The constraint of a reply to a request with <paramref name="tools"/> (null or <see cref="ToolChoiceMode.None"/>: none) and a thinking budget
    /// (null: no thinking): thinking first, closed by force when its budget is spent, then the tool calls. Null when nothing is constrained.
    /// </summary>
    /// <exception cref="ToolSchemaException">A strict tool's schema cannot be enforced.</exception>
    public Func<ITokenConstraint>? ForReply(ToolCallPolicy? tools, int? thinkingBudget, Action<ThinkingBudgetConstraint>? created = null)
    {
        Func<ITokenConstraint>? answer = null;
        if (tools is not null && tools.Mode != ToolChoiceMode.None)
        {
            if (ForcedCalls(tools) is { } forced)
                answer = () => Grammars.Create(forced);
            else
            {
                var body = CallBody(tools.Tools);
                bool repeat = tools.ParallelCalls;
                answer = () => new TriggeredConstraint(this, ChatMarkers.ToolCallStart, body, repeat);
            }
        }
        if (thinkingBudget is not int budget) return answer;
        return () =>
        {
            var thinking = new ThinkingBudgetConstraint(this, budget, answer);
            created?.Invoke(thinking);
            return thinking;
        };
    }

    /// <summary>
    /// Each token's bytes (null for EOS, padding and other ids that spell nothing): what the constraints here follow the
    /// output by, exactly as the grammar constraints do (a SentencePiece ▁ is a space, a byte piece its byte, where
    /// decoding a token alone would drop the one and turn the other into U+FFFD).
    /// </summary>
    internal IReadOnlyList<byte[]?> TokenBytes => Grammars.TokenByteStrings;

    /// <summary>A marker's UTF-8, encoded once: the followers compare it at every token.</summary>
    internal byte[] MarkerBytes(string marker) => markerBytes.GetOrAdd(marker, Encoding.UTF8.GetBytes);

    /// <summary>
    /// The tokens that could complete <paramref name="marker"/> and write more after it: those holding the marker's last byte
    /// before their own end. Only they need checking at each step (a few, against a vocabulary of tens of thousands).
    /// </summary>
    internal int[] CrossingCandidates(string marker) => crossing.GetOrAdd(marker, m =>
    {
        byte last = MarkerBytes(m)[^1];
        var tokens = TokenBytes;
        return [.. Enumerable.Range(0, tokens.Count).Where(id => tokens[id] is { } b && Array.IndexOf(b, last) is int at && at >= 0 && at < b.Length - 1)];
    });
}

/// <summary>
/// The thinking budgets, in tokens, of OpenAI's <c>reasoning_effort</c> (and <see cref="Microsoft.Extensions.AI.ReasoningEffort"/>):
/// small, since Loom's models are; a reply's <c>max_tokens</c> still bounds thinking and answer together.
/// </summary>
public static class ThinkingBudgets
{
    /// <summary>low: 512 tokens.</summary>
    public const int Low = 512;

    /// <summary>medium: 2048 tokens.</summary>
    public const int Medium = 2048;

    /// <summary>high: 8192 tokens.</summary>
    public const int High = 8192;

    /// <summary>extra high (Microsoft.Extensions.AI's ExtraHigh): 16384 tokens.</summary>
    public const int ExtraHigh = 16384;
}

/// <summary>A tool's parameter schema that Loom cannot enforce; <see cref="ToolIndex"/> and the inner <see cref="SchemaException"/> name the field.</summary>
public sealed class ToolSchemaException(int toolIndex, SchemaException inner)
    : Exception($"tools[{toolIndex}].function.parameters: {inner.Message}", inner)
{
    /// <summary>The tool's index in the request's tools.</summary>
    public int ToolIndex { get; } = toolIndex;

    /// <summary>The schema's error (its <see cref="SchemaException.Path"/> names the field).</summary>
    public SchemaException Schema { get; } = inner;
}

/// <summary>Follows the bytes a constrained output has so far, token by token, and finds where a marker completes.</summary>
internal sealed class TextFollower(ChatConstraintFactory factory)
{
    private readonly IReadOnlyList<byte[]?> tokenBytes = factory.TokenBytes;
    private readonly List<byte> text = [];

    public void Append(int token)
    {
        if (tokenBytes[token] is { } bytes) text.AddRange(bytes);
    }

    public bool EndsWith(string marker)
    {
        byte[] m = factory.MarkerBytes(marker);
        return text.Count >= m.Length && System.Runtime.InteropServices.CollectionsMarshal.AsSpan(text)[^m.Length..].SequenceEqual(m);
    }

    /// <summary>Forbids tokens that would complete <paramref name="marker"/> and write more after it (the constraint that follows must start right after the marker).</summary>
    public void ForbidCrossing(Span<bool> allowed, string marker)
    {
        byte[] m = factory.MarkerBytes(marker);
        int keep = Math.Min(m.Length - 1, text.Count);
        var tail = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(text)[^keep..];
        foreach (int id in factory.CrossingCandidates(marker))
        {
            if (id >= allowed.Length || !allowed[id] || tokenBytes[id] is not { } bytes) continue;
            byte[] joined = [.. tail, .. bytes];
            int at = joined.AsSpan().IndexOf(m);
            if (at >= 0 && at + m.Length < joined.Length) allowed[id] = false;
        }
    }
}

/// <summary>
/// Free output until <c>trigger</c> appears, then <c>after</c>'s language; when that is whole and can go no further, free again
/// (<c>repeat</c>) or only the end. OpenAI's <c>tool_choice: auto</c>: text, but a started call is a valid call.
/// </summary>
internal sealed class TriggeredConstraint(ChatConstraintFactory factory, string trigger, Grammar after, bool repeat) : ITokenConstraint
{
    private readonly TextFollower text = new(factory);
    private ITokenConstraint? inner;
    private bool done;

    public void FillAllowed(Span<bool> allowed)
    {
        if (inner is not null)
        {
            inner.FillAllowed(allowed);
            return;
        }
        allowed.Clear();
        int eos = factory.Vocabulary.EosId;
        if (done)
        {
            allowed[eos] = true;
            return;
        }
        allowed.Fill(true);
        text.ForbidCrossing(allowed, trigger);
    }

    public void Advance(int token)
    {
        if (inner is not null)
        {
            inner.Advance(token);
            if (inner.IsComplete && !inner.CanContinue)
            {
                inner = null;
                done = !repeat;
            }
            return;
        }
        if (done) throw new InvalidOperationException($"token {token} after the last allowed tool call: only the end is allowed");
        text.Append(token);
        if (text.EndsWith(trigger)) inner = factory.Grammars.Create(after);
    }

    public bool IsComplete => inner is null;

    public bool CanContinue => inner is not null || !done;
}

/// <summary>
/// A reply's thinking segment with a token budget: free text (never the end) until <see cref="ChatMarkers.ThinkingEnd"/> appears; once
/// <c>budget</c> thinking tokens are spent, only the tokens of <c>\n&lt;/think&gt;\n</c> are allowed. Then the answer, free or as
/// <c>then</c> constrains it. <see cref="ThinkingTokens"/> counts the segment's tokens, its closing included.
/// </summary>
public sealed class ThinkingBudgetConstraint : ITokenConstraint
{
    /// <summary>What a budget that runs out forces.</summary>
    public const string ForcedClosing = "\n" + ChatMarkers.ThinkingEnd + "\n";

    private readonly ChatConstraintFactory factory;
    private readonly int budget;
    private readonly Func<ITokenConstraint>? then;
    private readonly TextFollower text;
    private ITokenConstraint? closing;
    private ITokenConstraint? answer;

    /// <summary>Creates the constraint of one reply.</summary>
    /// <param name="factory">The vocabulary's constraint factory.</param>
    /// <param name="budget">The most tokens thinking may take before its closing is forced; 0 closes it at once.</param>
    /// <param name="then">The answer's constraint, created when thinking ends; null for free text.</param>
    public ThinkingBudgetConstraint(ChatConstraintFactory factory, int budget, Func<ITokenConstraint>? then)
    {
        this.factory = factory ?? throw new ArgumentNullException(nameof(factory));
        if (budget < 0) throw new ArgumentException($"the thinking budget is {budget} tokens: use 0 or more");
        this.budget = budget;
        this.then = then;
        text = new TextFollower(factory);
        if (budget == 0) closing = factory.Grammars.Create(Grammar.Literal(ForcedClosing));
    }

    /// <summary>Whether thinking has ended (naturally or forced).</summary>
    public bool ThinkingDone { get; private set; }

    /// <summary>The tokens of the thinking segment so far, its closing marker included.</summary>
    public int ThinkingTokens { get; private set; }

    /// <summary>Whether the budget ran out and the closing was forced.</summary>
    public bool Forced => closing is not null;

    /// <inheritdoc />
    public void FillAllowed(Span<bool> allowed)
    {
        if (ThinkingDone)
        {
            if (answer is not null) answer.FillAllowed(allowed);
            else allowed.Fill(true);
            return;
        }
        if (closing is not null)
        {
            closing.FillAllowed(allowed);
            allowed[factory.Vocabulary.EosId] = false;
            return;
        }
        allowed.Fill(true);
        allowed[factory.Vocabulary.EosId] = false; // thinking must close before the reply ends
        text.ForbidCrossing(allowed, ChatMarkers.ThinkingEnd);
    }

    /// <inheritdoc />
    public void Advance(int token)
    {
        if (ThinkingDone)
        {
            answer?.Advance(token);
            return;
        }
        ThinkingTokens++;
        if (closing is not null)
        {
            closing.Advance(token);
            if (closing.IsComplete && !closing.CanContinue) EndThinking();
            return;
        }
        text.Append(token);
        if (text.EndsWith(ChatMarkers.ThinkingEnd)) EndThinking();
        else if (ThinkingTokens >= budget) closing = factory.Grammars.Create(Grammar.Literal(ForcedClosing));
    }

    /// <inheritdoc />
    public bool IsComplete => ThinkingDone && (answer?.IsComplete ?? true);

    /// <inheritdoc />
    public bool CanContinue => !ThinkingDone || (answer?.CanContinue ?? true);

    private void EndThinking()
    {
        ThinkingDone = true;
        answer = then?.Invoke();
    }
}
