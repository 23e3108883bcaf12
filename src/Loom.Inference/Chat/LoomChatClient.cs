using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Loom.Inference.Engine;
using Microsoft.Extensions.AI;

namespace Loom.Inference.Chat;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an <see cref="IGenerationEngine"/>: renders
/// the conversation with an <see cref="IChatTemplate"/>, encodes it with the engine's vocabulary, maps
/// <see cref="ChatOptions"/> to <see cref="SamplingOptions"/> and reports the reply's text, finish reason
/// and token usage. Safe for concurrent requests (the engine queues them).
/// </summary>
/// <remarks>
/// Messages hold text, assistant messages also <see cref="FunctionCallContent"/> (rendered as the template's tool calls) and tool
/// messages <see cref="FunctionResultContent"/> (each a tool turn); other content and JSON response formats are refused with
/// <see cref="NotSupportedException"/>. <see cref="ChatOptions.Tools"/> (function declarations) are listed in the prompt and
/// <see cref="ChatOptions.ToolMode"/> constrains the reply as the server's <c>tool_choice</c> does (auto: a started call is a
/// valid one; <see cref="ChatToolMode.RequireAny"/>: one or more calls, one when <see cref="ChatOptions.AllowMultipleToolCalls"/>
/// is false; a required function: its call; none: tools not offered); a reply's calls come back as <see cref="FunctionCallContent"/>
/// with <see cref="ChatFinishReason.ToolCalls"/>, so <c>FunctionInvokingChatClient</c> can run them.
/// <see cref="ChatOptions.Reasoning"/>'s effort opens a thinking segment with a <see cref="ThinkingBudgets"/> budget; the thinking
/// comes back as <see cref="TextReasoningContent"/> and is counted in <see cref="UsageDetails.ReasoningTokenCount"/>.
/// <see cref="ChatOptions.Instructions"/> become a leading system turn. Cancelling a request's token
/// stops the engine's work on it and frees what it holds; the call (or the streaming enumeration,
/// after the text generated so far) then ends with <see cref="OperationCanceledException"/>.
/// </remarks>
public sealed class LoomChatClient : IChatClient
{
    /// <summary>The provider name reported in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "loom";

    // Compact JSON for prompts (Microsoft.Extensions.AI's defaults indent).
    private static readonly JsonSerializerOptions CompactJson = new(AIJsonUtilities.DefaultOptions) { WriteIndented = false };

    private readonly IGenerationEngine engine;
    private readonly ChatOptions? defaultOptions;
    private readonly ChatClientMetadata metadata;
    private readonly Lazy<ChatConstraintFactory> constraints;

    /// <summary>Creates a client; it does not own the engine, which the caller disposes.</summary>
    /// <param name="engine">The engine that generates the replies.</param>
    /// <param name="template">
    /// How conversations are rendered; when null, the template the engine's vocabulary brings
    /// (<see cref="ChatTemplate.ForVocabulary"/>: a Hugging Face tokenizer's chat template, else <see cref="ChatTemplate.Default"/>).
    /// </param>
    /// <param name="defaultOptions">Options for what a request's own options leave unset (copied here).</param>
    /// <exception cref="ArgumentException">The default options are invalid (e.g. a negative temperature or another model's id).</exception>
    /// <exception cref="NotSupportedException">The default options ask for JSON output or tools other than functions.</exception>
    /// <exception cref="FormatException">The vocabulary's chat template cannot be read (when <paramref name="template"/> is null).</exception>
    public LoomChatClient(IGenerationEngine engine, IChatTemplate? template = null, ChatOptions? defaultOptions = null)
    {
        this.engine = engine ?? throw new ArgumentNullException(nameof(engine));
        Template = template ?? ChatTemplate.ForVocabulary(engine.Vocabulary);
        this.defaultOptions = defaultOptions?.Clone();
        metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: engine.ModelName);
        constraints = new Lazy<ChatConstraintFactory>(() => new ChatConstraintFactory(new Constraints.TokenConstraintFactory(engine.Vocabulary)));
        _ = CreateSamplingOptions(null); // validates the defaults now rather than on the first request
    }

    /// <summary>How conversations are rendered.</summary>
    public IChatTemplate Template { get; }

    /// <summary>
    /// Maps chat options, falling back per option to the client's defaults, to the engine's sampling
    /// options: temperature, top-p, top-k, max output tokens, seed, presence and frequency penalties, and
    /// the stop sequences plus the template's <see cref="IChatTemplate.EndOfTurn"/> (not for a JSON response format, whose
    /// reply ends where its grammar does and whose strings could hold the marker). Generation also stops at EOS.
    /// </summary>
    /// <exception cref="ArgumentException">An option is out of range, there are more than 3 stop sequences besides the end of turn, or the model id names another model.</exception>
    public SamplingOptions CreateSamplingOptions(ChatOptions? options)
    {
        string? modelId = options?.ModelId ?? defaultOptions?.ModelId;
        if (modelId is not null && modelId != engine.ModelName)
            throw new ArgumentException($"model '{modelId}' is not served here; this client serves '{engine.ModelName}': leave ModelId unset or use that name");
        bool json = (options?.ResponseFormat ?? defaultOptions?.ResponseFormat) is ChatResponseFormatJson;

        var stops = new List<string>();
        foreach (string stop in options?.StopSequences ?? defaultOptions?.StopSequences ?? [])
            if (!stops.Contains(stop)) stops.Add(stop);
        if (!json && !stops.Contains(Template.EndOfTurn))
        {
            if (stops.Count > 3)
                throw new ArgumentException($"{stops.Count} stop sequences were given; at most 3 are allowed besides the template's end of turn '{Template.EndOfTurn}'");
            stops.Add(Template.EndOfTurn);
        }

        var defaults = new SamplingOptions();
        return new SamplingOptions
        {
            Temperature = options?.Temperature ?? defaultOptions?.Temperature ?? defaults.Temperature,
            TopP = options?.TopP ?? defaultOptions?.TopP ?? defaults.TopP,
            TopK = options?.TopK ?? defaultOptions?.TopK ?? defaults.TopK,
            MaxTokens = options?.MaxOutputTokens ?? defaultOptions?.MaxOutputTokens ?? defaults.MaxTokens,
            Seed = options?.Seed ?? defaultOptions?.Seed,
            PresencePenalty = options?.PresencePenalty ?? defaultOptions?.PresencePenalty ?? defaults.PresencePenalty,
            FrequencyPenalty = options?.FrequencyPenalty ?? defaultOptions?.FrequencyPenalty ?? defaults.FrequencyPenalty,
            Stop = stops,
            StopAtEos = true,
        };
    }

    /// <summary>
    /// The prompt text for a conversation: the options' (or defaults') instructions as a leading system
    /// turn, then the messages, rendered with <see cref="Template"/> with the options' tools (unless the tool mode is none)
    /// and, when the options ask for reasoning, a thinking segment opened.
    /// </summary>
    /// <exception cref="ArgumentException">There are no messages, a message has an unknown role, or the template refuses the conversation.</exception>
    /// <exception cref="NotSupportedException">A message holds content other than text, function calls (assistant) and function results (tool), or a tool is not a function.</exception>
    public string RenderPrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>();
        string? instructions = options?.Instructions ?? defaultOptions?.Instructions;
        if (!string.IsNullOrEmpty(instructions)) turns.Add(new ChatTurn(ChatRole.System.Value, instructions));
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            var text = new StringBuilder();
            var calls = new List<ToolCall>();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case UsageContent or TextReasoningContent: break; // metadata and thinking of an earlier reply, not part of the conversation
                    case FunctionCallContent call when message.Role == ChatRole.Assistant:
                        calls.Add(new ToolCall(call.CallId, call.Name, JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(), CompactJson)));
                        break;
                    case FunctionResultContent result when message.Role == ChatRole.Tool:
                        turns.Add(new ChatTurn(ChatRole.Tool.Value, ResultText(result)) { ToolCallId = result.CallId });
                        break;
                    default:
                        throw new NotSupportedException($"{content.GetType().Name} in a {message.Role} message is not supported: Loom's models read text, assistant function calls and tool results only");
                }
            }
            if (message.Role == ChatRole.Tool)
            {
                if (text.Length > 0) throw new NotSupportedException("a tool message holds text: send each result as FunctionResultContent, which names its call");
                continue;
            }
            turns.Add(new ChatTurn(message.Role.Value, text.ToString()) { ToolCalls = calls });
        }
        var tools = ToolPolicy(options);
        var prompt = new ChatPromptOptions { Tools = tools is { Mode: not ToolChoiceMode.None } ? tools.Tools : [], Thinking = ThinkingBudget(options) is not null };
        return Template.Render(turns, prompt);
    }

    /// <summary>The options' (or defaults') function tools and tool mode, or null when there are none.</summary>
    /// <exception cref="NotSupportedException">A tool is not a function declaration.</exception>
    /// <exception cref="ArgumentException">The tool mode requires a function that is not among the tools, or two tools share a name.</exception>
    public ToolCallPolicy? ToolPolicy(ChatOptions? options)
    {
        var tools = options?.Tools ?? defaultOptions?.Tools;
        if (tools is not { Count: > 0 }) return null;
        var declarations = new List<ToolDeclaration>();
        foreach (var tool in tools)
        {
            if (tool is not AIFunctionDeclaration function)
                throw new NotSupportedException($"tool '{tool.Name}' is a {tool.GetType().Name}: Loom calls functions only (AIFunctionDeclaration, e.g. from AIFunctionFactory)");
            declarations.Add(new ToolDeclaration(function.Name, string.IsNullOrEmpty(function.Description) ? null : function.Description, function.JsonSchema));
        }
        var mode = options?.ToolMode ?? defaultOptions?.ToolMode;
        var (choice, name) = mode switch
        {
            NoneChatToolMode => (ToolChoiceMode.None, null),
            RequiredChatToolMode { RequiredFunctionName: { } required } => (ToolChoiceMode.Function, required),
            RequiredChatToolMode => (ToolChoiceMode.Required, (string?)null),
            _ => (ToolChoiceMode.Auto, null),
        };
        if (name is not null && !declarations.Any(d => d.Name == name))
            throw new ArgumentException($"the tool mode requires function '{name}', which is not among the tools ({string.Join(", ", declarations.Select(d => d.Name))})");
        return new ToolCallPolicy
        {
            Tools = declarations,
            Mode = choice,
            FunctionName = name,
            ParallelCalls = options?.AllowMultipleToolCalls ?? defaultOptions?.AllowMultipleToolCalls ?? true,
        };
    }

    /// <summary>The thinking budget the options' (or defaults') reasoning effort asks for (<see cref="ThinkingBudgets"/>), or null for no thinking.</summary>
    public int? ThinkingBudget(ChatOptions? options) => (options?.Reasoning ?? defaultOptions?.Reasoning)?.Effort switch
    {
        ReasoningEffort.Low => ThinkingBudgets.Low,
        ReasoningEffort.Medium => ThinkingBudgets.Medium,
        ReasoningEffort.High => ThinkingBudgets.High,
        ReasoningEffort.ExtraHigh => ThinkingBudgets.ExtraHigh,
        _ => null,
    };

    private static string ResultText(FunctionResultContent result) => result.Result switch
    {
        null => result.Exception is { } e ? $"error: {e.Message}" : "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } s => s.GetString()!,
        var value => JsonSerializer.Serialize(value, CompactJson),
    };

    /// <inheritdoc />
    /// <exception cref="ArgumentException">See <see cref="CreateSamplingOptions"/> and <see cref="RenderPrompt"/>; also a prompt longer than the model's context.</exception>
    /// <exception cref="NotSupportedException">Content other than text, function calls and results, tools other than functions, or JSON output were asked for.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (request, reply) = CreateRequest(messages, options);
        string responseId = NewResponseId();
        var text = new StringBuilder();
        GenerationUpdate? last = null;
        await foreach (var update in Generate(request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            last = update;
        }
        var final = last!; // Generate ends with a finished update or throws
        var message = new ChatMessage(ChatRole.Assistant, text.ToString()) { MessageId = responseId };
        int calls = 0;
        if (reply.Parse)
        {
            var parsed = ReplyParser.Parse(text.ToString(), reply.Thinking);
            var contents = new List<AIContent>();
            if (parsed.Reasoning is not null) contents.Add(new TextReasoningContent(parsed.Reasoning));
            if (parsed.Content.Length > 0) contents.Add(new TextContent(parsed.Content));
            contents.AddRange(parsed.ToolCalls.Select(FunctionCall));
            message = new ChatMessage(ChatRole.Assistant, contents) { MessageId = responseId };
            calls = parsed.ToolCalls.Count;
        }
        return new ChatResponse(message)
        {
            ResponseId = responseId,
            ModelId = engine.ModelName,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(final.FinishReason!.Value, calls),
            Usage = Usage(final, reply),
        };
    }

    /// <inheritdoc />
    /// <remarks>
    /// Every update is an assistant text (or thinking) delta of one message; the last carries the finish reason, the reply's
    /// <see cref="FunctionCallContent"/>s (whole) and a
    /// <see cref="UsageContent"/> (which <see cref="ChatResponseExtensions.ToChatResponseAsync"/> turns into
    /// <see cref="ChatResponse.Usage"/>). The engine's own update is each one's <see cref="ChatResponseUpdate.RawRepresentation"/>.
    /// Invalid requests throw here, before enumeration.
    /// </remarks>
    /// <exception cref="ArgumentException">See <see cref="CreateSamplingOptions"/> and <see cref="RenderPrompt"/>.</exception>
    /// <exception cref="NotSupportedException">Content other than text, function calls and results, tools other than functions, or JSON output were asked for.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        Stream(CreateRequest(messages, options), cancellationToken);

    /// <summary>How a reply is read: whether its text is parsed for thinking and tool calls, and its thinking constraint once made.</summary>
    private sealed class ReplyShape(bool thinking, bool toolCalls)
    {
        public bool Thinking => thinking;

        public bool Parse => thinking || toolCalls;

        public ThinkingBudgetConstraint? Budget { get; set; }
    }

    /// <summary>A parsed call; arguments that are not a JSON object (a reply cut off by its token limit) become the content's <see cref="FunctionCallContent.Exception"/>.</summary>
    private static FunctionCallContent FunctionCall(ToolCall call)
    {
        try
        {
            var arguments = JsonSerializer.Deserialize<Dictionary<string, object?>>(call.Arguments.Length == 0 ? "{}" : call.Arguments, AIJsonUtilities.DefaultOptions);
            return new FunctionCallContent(call.Id, call.Name, arguments);
        }
        catch (JsonException e)
        {
            return new FunctionCallContent(call.Id, call.Name)
            {
                Exception = new InvalidOperationException($"the arguments of call '{call.Id}' to '{call.Name}' are not a whole JSON object (was the reply cut off by its token limit?): {call.Arguments}", e),
            };
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(engine)) return engine;
        return null;
    }

    /// <summary>Does nothing: the engine belongs to the caller.</summary>
    public void Dispose()
    {
    }

    private (GenerationRequest Request, ReplyShape Reply) CreateRequest(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var sampling = CreateSamplingOptions(options);
        var tools = ToolPolicy(options);
        int? budget = ThinkingBudget(options);
        var reply = new ReplyShape(budget is not null, tools is { Mode: not ToolChoiceMode.None });
        var prompt = engine.Vocabulary.Encode(RenderPrompt(messages, options));
        var constraint = reply.Parse ? constraints.Value.ForReply(tools, budget, made => reply.Budget = made) : null;
        if ((options?.ResponseFormat ?? defaultOptions?.ResponseFormat) is ChatResponseFormatJson json)
        {
            if (reply.Parse)
                throw new NotSupportedException("a JSON response format cannot be combined with tools or reasoning: ask for one of them (or ChatToolMode.None)");
            var grammar = JsonGrammar(json);
            // As the server does: the constraint steers the reply to end (with EOS) within the tokens the engine will generate.
            int room = Math.Max(1, Math.Min(sampling.MaxTokens, engine.IsEncoderDecoder ? engine.ContextLength - 1 : engine.ContextLength - prompt.Length));
            var factory = constraints.Value.Grammars;
            constraint = () => factory.Create(grammar, room);
        }
        return (new GenerationRequest(prompt, sampling) { Constraint = constraint }, reply);
    }

    /// <summary>Any JSON object, or the values of the format's schema.</summary>
    /// <exception cref="ArgumentException">The schema is malformed or uses a feature Loom cannot enforce (the message names it).</exception>
    private static Constraints.Grammar JsonGrammar(ChatResponseFormatJson format)
    {
        if (format.Schema is not { } schema) return Constraints.Grammar.JsonObject();
        try
        {
            return Constraints.Grammar.JsonSchema(schema);
        }
        catch (Constraints.SchemaException e)
        {
            throw new ArgumentException($"the response format's schema{(format.SchemaName is { } name ? $" '{name}'" : "")} cannot be enforced: {e.Message}", nameof(format), e);
        }
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream((GenerationRequest Request, ReplyShape Reply) call, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string responseId = NewResponseId();
        var createdAt = DateTimeOffset.UtcNow;
        var parser = call.Reply.Parse ? new ReplyParser(call.Reply.Thinking) : null;
        var pending = new List<(string Id, string Name, StringBuilder Arguments)>(); // calls go out whole, with the last update
        await foreach (var update in Generate(call.Request, cancellationToken).ConfigureAwait(false))
        {
            if (update.Text.Length == 0 && update.FinishReason is null) continue; // text held back (a partial character or a possible stop sequence)
            var contents = new List<AIContent>();
            if (parser is null)
            {
                if (update.Text.Length > 0) contents.Add(new TextContent(update.Text));
            }
            else
            {
                var pieces = parser.Push(update.Text).ToList();
                if (update.FinishReason is not null) pieces.AddRange(parser.Finish());
                foreach (var piece in pieces)
                {
                    if (piece.Reasoning is { Length: > 0 } reasoning) contents.Add(new TextReasoningContent(reasoning));
                    if (piece.Content is { Length: > 0 } content) contents.Add(new TextContent(content));
                    if (piece.CallName is { } name) pending.Add((piece.CallId!, name, new StringBuilder()));
                    if (piece.Arguments is { } arguments) pending[piece.CallIndex!.Value].Arguments.Append(arguments);
                }
                if (update.FinishReason is not null) contents.AddRange(pending.Select(c => FunctionCall(new ToolCall(c.Id, c.Name, c.Arguments.ToString()))));
            }
            if (update.FinishReason is not null) contents.Add(new UsageContent(Usage(update, call.Reply)));
            if (contents.Count == 0) continue;
            yield return new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = engine.ModelName,
                CreatedAt = createdAt,
                FinishReason = update.FinishReason is { } reason ? MapFinishReason(reason, pending.Count) : null,
                RawRepresentation = update,
            };
        }
    }

    /// <summary>The engine's updates, ending with a finished one; a cancelled request throws instead.</summary>
    private async IAsyncEnumerable<GenerationUpdate> Generate(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var update in engine.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.FinishReason == FinishReason.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new OperationCanceledException("the engine cancelled the request");
            }
            yield return update;
            if (update.FinishReason is not null) yield break;
        }
        cancellationToken.ThrowIfCancellationRequested();
        throw new InvalidOperationException($"engine '{engine.ModelName}' ended a request without a finish reason");
    }

    private static ChatFinishReason MapFinishReason(FinishReason reason, int calls) => reason switch
    {
        FinishReason.Stop or FinishReason.StopSequence => calls > 0 ? ChatFinishReason.ToolCalls : ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, "a cancelled request has no chat finish reason"),
    };

    private static UsageDetails Usage(GenerationUpdate update, ReplyShape reply) => new()
    {
        InputTokenCount = update.PromptTokens,
        OutputTokenCount = update.CompletionTokens,
        TotalTokenCount = update.PromptTokens + update.CompletionTokens,
        ReasoningTokenCount = reply.Thinking ? reply.Budget?.ThinkingTokens ?? 0 : null,
    };

    private static string NewResponseId() => $"loom-{Guid.NewGuid():N}";
}
