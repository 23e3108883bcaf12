using System.Text;

namespace Loom.Inference.Chat;

/// <summary>One message of a conversation.</summary>
/// <param name="Role">"system", "user", "assistant" or "tool" (others are refused by <see cref="ChatTemplate"/>).</param>
/// <param name="Content">The message's text (a tool turn's: the function's result).</param>
public sealed record ChatTurn(string Role, string Content)
{
    /// <summary>An assistant turn's calls, written after its text; empty for none.</summary>
    public IReadOnlyList<ToolCall> ToolCalls
    {
        get;
        init => field = value ?? throw new ArgumentException("ToolCalls must not be null; use [] for none");
    } = [];

    /// <summary>A tool turn's call id: the <see cref="ToolCall.Id"/> whose result it holds (required for tool turns).</summary>
    public string? ToolCallId { get; init; }

    /// <summary>A tool turn's function name, when known (some templates write it); null otherwise.</summary>
    public string? Name { get; init; }
}

/// <summary>
/// Renders a conversation as the prompt text a model continues, ending where the assistant's reply
/// begins. Every turn is <c>{RoleStart}{role}{RoleEnd}\n{content}{EndOfTurn}\n</c> and the prompt ends
/// with the assistant's header, <c>{RoleStart}assistant{RoleEnd}\n</c>. The default format marks each
/// turn with a role header on its own line (<c>&lt;|user|&gt;</c>, <c>&lt;|assistant|&gt;</c>,
/// <c>&lt;|system|&gt;</c>) and ends every turn with <c>&lt;|end|&gt;</c>, which is also a stop sequence
/// for the reply. The markers are plain text, so any vocabulary (bytes included) can learn them from
/// data formatted the same way.
/// </summary>
public sealed record ChatTemplate : IChatTemplate
{
    /// <summary>Loom's default template: <c>&lt;|user|&gt;\nHi&lt;|end|&gt;\n&lt;|assistant|&gt;\n</c>.</summary>
    public static ChatTemplate Default { get; } = new();

    /// <summary>ChatML, as used by many instruction-tuned models: <c>&lt;|im_start|&gt;user\nHi&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n</c>.</summary>
    public static ChatTemplate ChatMl { get; } = new() { RoleStart = "<|im_start|>", RoleEnd = "", EndOfTurn = "<|im_end|>" };

    /// <summary>
    /// The template a checkpoint's vocabulary brings (<see cref="HuggingFaceChatTemplate"/>, when it is a Hugging Face
    /// tokenizer whose tokenizer_config.json has a chat template), otherwise <see cref="Default"/>.
    /// </summary>
    /// <param name="vocabulary">The model's vocabulary.</param>
    /// <exception cref="FormatException">The vocabulary's chat template is not a Jinja template this interpreter reads.</exception>
    public static IChatTemplate ForVocabulary(Loom.Data.IVocabulary vocabulary) =>
        HuggingFaceChatTemplate.FromVocabulary(vocabulary) ?? (IChatTemplate)Default;

    /// <summary>The names <see cref="Named"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["loom", "chatml"];

    /// <summary>The template with the given name (<c>loom</c> for <see cref="Default"/>, <c>chatml</c> for <see cref="ChatMl"/>), e.g. from a command-line option.</summary>
    /// <exception cref="ArgumentException">The name is unknown.</exception>
    public static ChatTemplate Named(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "loom" => Default,
            "chatml" => ChatMl,
            _ => throw new ArgumentException($"unknown chat template '{name}'; use one of {string.Join(", ", Names)}"),
        };
    }

    /// <summary>Written before a turn's role, e.g. "&lt;|" for "&lt;|user|&gt;".</summary>
    public string RoleStart
    {
        get;
        init => field = value ?? throw new ArgumentException("RoleStart must not be null; use \"\" for none");
    } = "<|";

    /// <summary>Written after a turn's role, then a newline.</summary>
    public string RoleEnd
    {
        get;
        init => field = value ?? throw new ArgumentException("RoleEnd must not be null; use \"\" for none");
    } = "|>";

    /// <summary>Ends every turn (then a newline); a reply stops when the model writes it, so it must not be empty.</summary>
    public string EndOfTurn
    {
        get;
        init => field = !string.IsNullOrEmpty(value) ? value : throw new ArgumentException("EndOfTurn must not be empty: it is the stop sequence that ends a reply");
    } = "<|end|>";

    /// <summary>The roles a conversation may use.</summary>
    public static IReadOnlyList<string> Roles { get; } = ["system", "user", "assistant", "tool"];

    /// <summary>The prompt for the assistant's next reply.</summary>
    /// <exception cref="ArgumentException">The conversation is empty, uses an unknown role, or has a tool turn without a call id.</exception>
    public string Render(IReadOnlyList<ChatTurn> conversation) => Render(conversation, ChatPromptOptions.None);

    /// <inheritdoc />
    public string Render(IReadOnlyList<ChatTurn> conversation, ChatPromptOptions options)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentNullException.ThrowIfNull(options);
        if (conversation.Count == 0) throw new ArgumentException("the conversation has no messages; send at least one");
        var text = new StringBuilder();
        bool toolsListed = options.Tools.Count == 0;
        if (!toolsListed && conversation[0].Role != "system")
        {
            Header(text, "system").Append(ToolsBlock(options.Tools)).Append(EndOfTurn).Append('\n');
            toolsListed = true;
        }
        foreach (var turn in conversation)
        {
            if (!Roles.Contains(turn.Role))
                throw new ArgumentException($"unknown role '{turn.Role}'; use one of {string.Join(", ", Roles)}");
            if (turn.Role == "tool" && string.IsNullOrEmpty(turn.ToolCallId))
                throw new ArgumentException("a tool turn has no ToolCallId: a tool result must name the call it answers");
            if (turn.ToolCalls.Count > 0 && turn.Role != "assistant")
                throw new ArgumentException($"a {turn.Role} turn has tool calls: only assistant turns make calls");
            Header(text, turn.Role).Append(turn.Content);
            if (!toolsListed && turn.Role == "system")
            {
                text.Append(turn.Content.Length > 0 ? "\n\n" : "").Append(ToolsBlock(options.Tools));
                toolsListed = true;
            }
            foreach (var call in turn.ToolCalls)
                text.Append(text[^1] == '\n' ? "" : "\n").Append(ChatMarkers.FormatToolCall(call.Name, call.Arguments));
            text.Append(EndOfTurn).Append('\n');
        }
        Header(text, "assistant");
        if (options.Thinking) text.Append(ChatMarkers.ThinkingStart).Append('\n');
        return text.ToString();
    }

    /// <summary>The system text that lists the tools and says how to call them.</summary>
    private static string ToolsBlock(IReadOnlyList<ToolDeclaration> tools)
    {
        var text = new StringBuilder("# Tools\nYou may call one or more of these functions:\n<tools>\n");
        foreach (var tool in tools) text.Append(tool.ToJson()).Append('\n');
        return text.Append("</tools>\nTo call a function, write ")
            .Append(ChatMarkers.ToolCallStart).Append("{\"name\": <function name>, \"arguments\": <arguments object>}").Append(ChatMarkers.ToolCallEnd)
            .ToString();
    }

    private StringBuilder Header(StringBuilder text, string role) => text.Append(RoleStart).Append(role).Append(RoleEnd).Append('\n');
}
