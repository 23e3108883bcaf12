using System.Text.Json;
using Loom.Data;
using Loom.Inference.Chat.Jinja;

namespace Loom.Inference.Chat;

/// <summary>
/// A Hugging Face chat template: the Jinja source of tokenizer_config.json's <c>chat_template</c>, rendered as
/// transformers' <c>apply_chat_template(messages, add_generation_prompt=True)</c> does, with the messages'
/// <c>role</c> and <c>content</c>, <c>bos_token</c> and <c>eos_token</c>. With tools, the template also gets <c>tools</c>
/// (OpenAI-style declarations), assistant messages their <c>tool_calls</c> (arguments as objects) and tool messages their
/// <c>tool_call_id</c> and <c>name</c>; with thinking, <c>enable_thinking</c> is true and, when the template does not end
/// the prompt with <c>&lt;think&gt;</c> itself, <c>&lt;think&gt;\n</c> is appended.
/// </summary>
public sealed class HuggingFaceChatTemplate : IChatTemplate
{
    /// <summary>
    /// Markers that end a turn in well-known templates (Llama 3's, Gemma's, ChatML's, Phi's, …); the first one the
    /// template writes that is also an added token of the vocabulary is a template's <see cref="EndOfTurn"/>.
    /// </summary>
    public static IReadOnlyList<string> KnownEndOfTurnMarkers { get; } =
        ["<|eot_id|>", "<end_of_turn>", "<|im_end|>", "<|end|>", "<|eot|>", "<|END_OF_TURN_TOKEN|>", "<|endoftext|>"];

    private readonly JinjaTemplate template;

    /// <summary>Parses a template.</summary>
    /// <param name="source">The Jinja source (tokenizer_config.json's <c>chat_template</c>).</param>
    /// <param name="bosToken">The text of the beginning-of-sequence token (the template's <c>bos_token</c>), or null for none.</param>
    /// <param name="eosToken">The text of the end-of-sequence token (the template's <c>eos_token</c>), or null for none.</param>
    /// <param name="endOfTurn">What ends a reply, e.g. <c>&lt;|eot_id|&gt;</c>.</param>
    /// <exception cref="FormatException">The source is not a Jinja template this interpreter reads.</exception>
    /// <exception cref="ArgumentException">The end of turn is empty.</exception>
    public HuggingFaceChatTemplate(string source, string? bosToken, string? eosToken, string endOfTurn)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (string.IsNullOrEmpty(endOfTurn)) throw new ArgumentException("the end of turn must not be empty: it is the stop sequence that ends a reply", nameof(endOfTurn));
        template = new JinjaTemplate(source);
        BosToken = bosToken;
        EosToken = eosToken;
        EndOfTurn = endOfTurn;
    }

    /// <summary>
    /// The template of a Hugging Face vocabulary whose tokenizer_config.json has a <c>chat_template</c>, or null for any
    /// other vocabulary. Its end of turn is the first of <see cref="KnownEndOfTurnMarkers"/> that the template writes and
    /// the vocabulary has as an added token, else the EOS token.
    /// </summary>
    /// <param name="vocabulary">The model's vocabulary.</param>
    /// <exception cref="FormatException">The chat template is not a Jinja template this interpreter reads.</exception>
    public static HuggingFaceChatTemplate? FromVocabulary(IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (vocabulary is not HuggingFaceVocabulary { ChatTemplate: { } source } hf) return null;
        string? bos = hf.BosId is { } b ? hf.Token(b) : null;
        string? eos = hf.Token(hf.EosId);
        string? marker = KnownEndOfTurnMarkers.FirstOrDefault(m =>
            source.Contains(m, StringComparison.Ordinal) && hf.AddedTokens.Any(t => t.Content == m));
        string endOfTurn = marker ?? eos ?? throw new FormatException($"{hf.Name} has a chat template but its EOS token {hf.EosId} has no text to stop a reply at");
        try
        {
            return new HuggingFaceChatTemplate(source, bos, eos, endOfTurn);
        }
        catch (FormatException e)
        {
            throw new FormatException($"the chat template of {hf.ConfigPath ?? hf.Name} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>The template's <c>bos_token</c>, or null when it is undefined.</summary>
    public string? BosToken { get; }

    /// <summary>The template's <c>eos_token</c>, or null when it is undefined.</summary>
    public string? EosToken { get; }

    /// <summary>The Jinja source.</summary>
    public string Source => template.Source;

    /// <inheritdoc />
    public string EndOfTurn { get; }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The template does something invalid with its values (an unknown filter, …).</exception>
    public string Render(IReadOnlyList<ChatTurn> conversation) => Render(conversation, ChatPromptOptions.None);

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The template does something invalid with its values (an unknown filter, …).</exception>
    public string Render(IReadOnlyList<ChatTurn> conversation, ChatPromptOptions options)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentNullException.ThrowIfNull(options);
        if (conversation.Count == 0) throw new ArgumentException("the conversation has no messages; send at least one");
        var messages = conversation.Select(Message).ToList();
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = true,
        };
        if (options.Tools.Count > 0)
            variables["tools"] = options.Tools.Select(t => FromJson(JsonDocument.Parse(t.ToJson()).RootElement)).ToList();
        if (options.Thinking) variables["enable_thinking"] = true;
        if (BosToken is not null) variables["bos_token"] = BosToken;
        if (EosToken is not null) variables["eos_token"] = EosToken;
        string prompt;
        try
        {
            prompt = template.Render(variables);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"the chat template refused the conversation: {e.Message}", e);
        }
        if (options.Thinking && !prompt.TrimEnd().EndsWith(ChatMarkers.ThinkingStart, StringComparison.Ordinal))
            prompt += ChatMarkers.ThinkingStart + "\n";
        return prompt;
    }

    private static object? Message(ChatTurn turn)
    {
        if (turn.Role == "tool" && string.IsNullOrEmpty(turn.ToolCallId))
            throw new ArgumentException("a tool turn has no ToolCallId: a tool result must name the call it answers");
        var message = new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = turn.Role, ["content"] = turn.Content };
        if (turn.ToolCalls.Count > 0)
        {
            message["tool_calls"] = turn.ToolCalls.Select(c => (object?)new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?>(StringComparer.Ordinal) { ["name"] = c.Name, ["arguments"] = Arguments(c) },
            }).ToList();
        }
        if (turn.ToolCallId is not null) message["tool_call_id"] = turn.ToolCallId;
        if (turn.Name is not null) message["name"] = turn.Name;
        return message;
    }

    private static object? Arguments(ToolCall call)
    {
        try
        {
            using var document = JsonDocument.Parse(call.Arguments);
            return FromJson(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"the arguments of call '{call.Id}' to '{call.Name}' are not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>A JSON value as the template's values: dictionaries (in the JSON's order), lists, strings, longs, doubles, booleans, null.</summary>
    private static object? FromJson(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new Dictionary<string, object?>(StringComparer.Ordinal), (map, p) =>
        {
            map[p.Name] = FromJson(p.Value);
            return map;
        }),
        JsonValueKind.Array => value.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Number => value.TryGetInt64(out long l) ? l : value.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };
}
