using System.Text;
using System.Text.Json;

namespace Loom.Inference.Chat;

/// <summary>A function the model may call: OpenAI's <c>tools[i].function</c>.</summary>
/// <param name="Name">The function's name, unique among a request's tools.</param>
/// <param name="Description">What it does, for the model; null for none.</param>
/// <param name="Parameters">The JSON schema of its arguments, an object schema.</param>
public sealed record ToolDeclaration(string Name, string? Description, JsonElement Parameters)
{
    /// <summary>
    /// OpenAI's <c>strict</c>: a schema Loom cannot enforce is an error (<see cref="Constraints.SchemaException"/>) rather than
    /// falling back to any JSON object for the arguments.
    /// </summary>
    public bool Strict { get; init; }

    /// <summary>The declaration as OpenAI writes a tool: <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        // Relaxed escaping: the prompt shows the model "<" and "é", not "\u003C" and "\u00E9".
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("type", "function");
            writer.WriteStartObject("function");
            writer.WriteString("name", Name);
            if (Description is not null) writer.WriteString("description", Description);
            writer.WritePropertyName("parameters");
            Parameters.WriteTo(writer);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}

/// <summary>A call the assistant made: OpenAI's <c>tool_calls[i]</c>.</summary>
/// <param name="Id">The call's id (e.g. <c>call_…</c>), which the tool turn holding its result names.</param>
/// <param name="Name">The function's name.</param>
/// <param name="Arguments">The arguments as JSON text (an object).</param>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>What a prompt offers besides the conversation: tools the model may call, and whether the reply opens with a thinking segment.</summary>
public sealed record ChatPromptOptions
{
    /// <summary>No tools, no thinking: the plain prompt.</summary>
    public static ChatPromptOptions None { get; } = new();

    /// <summary>The functions the model may call; empty for none.</summary>
    public IReadOnlyList<ToolDeclaration> Tools
    {
        get;
        init => field = value ?? throw new ArgumentException("Tools must not be null; use [] for none");
    } = [];

    /// <summary>Whether the assistant's reply opens with a thinking segment (<see cref="ChatMarkers.ThinkingStart"/> ends the prompt).</summary>
    public bool Thinking { get; init; }
}

/// <summary>The plain-text markers of tool calls and thinking in Loom's prompts and replies (the ones Qwen-style templates use too).</summary>
public static class ChatMarkers
{
    /// <summary>Opens a tool call: <c>&lt;tool_call&gt;{"name": …, "arguments": {…}}&lt;/tool_call&gt;</c>.</summary>
    public const string ToolCallStart = "<tool_call>";

    /// <summary>Closes a tool call.</summary>
    public const string ToolCallEnd = "</tool_call>";

    /// <summary>Opens the thinking segment at the start of a reply.</summary>
    public const string ThinkingStart = "<think>";

    /// <summary>Closes the thinking segment; the answer follows.</summary>
    public const string ThinkingEnd = "</think>";

    /// <summary>The text of a call as the model writes it: <c>&lt;tool_call&gt;{"name": "f", "arguments": {…}}&lt;/tool_call&gt;</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are not a JSON object.</exception>
    public static string FormatToolCall(string name, string arguments)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(arguments);
        string args;
        try
        {
            using var document = JsonDocument.Parse(arguments);
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw new ArgumentException($"the arguments of a call to '{name}' must be a JSON object, not {document.RootElement.ValueKind}");
            args = document.RootElement.GetRawText();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"the arguments of a call to '{name}' are not valid JSON: {e.Message}", e);
        }
        return $"{ToolCallStart}{{\"name\": {JsonSerializer.Serialize(name)}, \"arguments\": {args}}}{ToolCallEnd}";
    }

    /// <summary>A new call id, <c>call_</c> and 24 hex digits.</summary>
    public static string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];
}
