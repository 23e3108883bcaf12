using System.Text.Json;
using System.Text.RegularExpressions;
using Loom.Inference.Chat;

namespace Loom.Serving.OpenAi;

/// <summary>
/// Reads a chat request's <c>tools</c>, <c>tool_choice</c>, <c>parallel_tool_calls</c>, assistant <c>tool_calls</c>, and its thinking:
/// <c>reasoning_effort</c> (none and minimal: no thinking; low, medium, high: <see cref="ThinkingBudgets"/>' tokens) or Loom's
/// <c>thinking_budget</c> (tokens; 0: no thinking).
/// </summary>
internal static partial class ToolFields
{
    private static readonly JsonElement EmptyParameters = JsonDocument.Parse("""{"type": "object", "properties": {}}""").RootElement.Clone();

    /// <summary>The request's tools and tool choice, or null when it has no tools.</summary>
    /// <exception cref="ApiException">400 naming the field: a malformed tool, duplicate names, an unenforceable strict schema, a tool choice naming no tool.</exception>
    public static ToolCallPolicy? Policy(JsonFields fields)
    {
        var tools = Tools(fields);
        bool parallel = fields.Bool("parallel_tool_calls") ?? true;
        var choice = fields.Element("tool_choice");
        if (tools is null)
        {
            if (choice is { } c && !(c.ValueKind == JsonValueKind.String && c.GetString() is "none" or "auto"))
                throw ApiException.InvalidRequest("tool_choice asks for a tool call but the request has no tools: add tools or leave tool_choice out", "tool_choice");
            return null;
        }
        var (mode, name) = Choice(choice, tools);
        var policy = new ToolCallPolicy { Tools = tools, Mode = mode, FunctionName = name, ParallelCalls = parallel };
        try
        {
            ChatConstraintFactory.Validate(policy);
        }
        catch (ToolSchemaException e)
        {
            string param = $"tools[{e.ToolIndex}].function.parameters";
            throw ApiException.InvalidRequest($"{param} cannot be enforced: {e.Schema.Message} (field {e.Schema.Path}); simplify the schema or set strict to false", param);
        }
        return policy;
    }

    private static List<ToolDeclaration>? Tools(JsonFields fields)
    {
        if (fields.Element("tools") is not { } tools) return null;
        if (tools.ValueKind != JsonValueKind.Array) throw fields.WrongType("tools", "an array of tools", tools);
        if (tools.GetArrayLength() == 0) return null;
        var declarations = new List<ToolDeclaration>();
        int index = 0;
        foreach (var element in tools.EnumerateArray())
        {
            string path = $"tools[{index++}]";
            var tool = JsonFields.Of(element, path);
            string type = tool.String("type") ?? throw ApiException.InvalidRequest($"{tool.Param("type")} is missing: use \"function\"", tool.Param("type"));
            if (type != "function") throw ApiException.InvalidRequest($"{tool.Param("type")} '{type}' is not supported: only \"function\" tools", tool.Param("type"));
            var functionElement = tool.Element("function") ?? throw ApiException.InvalidRequest($"{tool.Param("function")} is missing: give the function's name and parameters", tool.Param("function"));
            var function = JsonFields.Of(functionElement, tool.Param("function"));
            string name = function.String("name") ?? throw ApiException.InvalidRequest($"{function.Param("name")} is missing", function.Param("name"));
            if (!FunctionName().IsMatch(name))
                throw ApiException.InvalidRequest($"{function.Param("name")} '{name}' is not a valid function name: use 1 to 64 letters, digits, underscores and dashes", function.Param("name"));
            int earlier = declarations.FindIndex(d => d.Name == name);
            if (earlier >= 0)
                throw ApiException.InvalidRequest($"{function.Param("name")} '{name}' is also the name of tools[{earlier}]: function names must be unique", function.Param("name"));
            var parameters = function.Element("parameters") ?? EmptyParameters;
            if (parameters.ValueKind != JsonValueKind.Object) throw function.WrongType("parameters", "a JSON schema object", parameters);
            declarations.Add(new ToolDeclaration(name, function.String("description"), parameters.Clone()) { Strict = function.Bool("strict") ?? false });
        }
        return declarations;
    }

    private static (ToolChoiceMode Mode, string? Name) Choice(JsonElement? choice, List<ToolDeclaration> tools)
    {
        if (choice is not { } value) return (ToolChoiceMode.Auto, null);
        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString() switch
            {
                "auto" => (ToolChoiceMode.Auto, null),
                "none" => (ToolChoiceMode.None, null),
                "required" => (ToolChoiceMode.Required, null),
                var other => throw ApiException.InvalidRequest($"tool_choice '{other}' is not supported: use \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}", "tool_choice"),
            };
        }
        var fields = JsonFields.Of(value, "tool_choice");
        if (fields.String("type") is { } type && type != "function")
            throw ApiException.InvalidRequest($"tool_choice.type '{type}' is not supported: use \"function\"", "tool_choice.type");
        var function = fields.Element("function") ?? throw ApiException.InvalidRequest("tool_choice.function is missing: name the function to call", "tool_choice.function");
        string name = JsonFields.Of(function, "tool_choice.function").String("name")
            ?? throw ApiException.InvalidRequest("tool_choice.function.name is missing", "tool_choice.function.name");
        if (!tools.Any(t => t.Name == name))
            throw ApiException.InvalidRequest($"tool_choice names the function '{name}', which is not in tools ({string.Join(", ", tools.Select(t => t.Name))})", "tool_choice.function.name");
        return (ToolChoiceMode.Function, name);
    }

    /// <summary>An assistant message's <c>tool_calls</c>.</summary>
    public static IReadOnlyList<ToolCall> Calls(JsonFields message, JsonElement calls)
    {
        if (calls.ValueKind != JsonValueKind.Array) throw message.WrongType("tool_calls", "an array of tool calls", calls);
        var result = new List<ToolCall>();
        int index = 0;
        foreach (var element in calls.EnumerateArray())
        {
            var call = JsonFields.Of(element, $"{message.Param("tool_calls")}[{index++}]");
            string id = call.String("id") ?? throw ApiException.InvalidRequest($"{call.Param("id")} is missing: tool messages name their call by it", call.Param("id"));
            if (call.String("type") is { } type && type != "function")
                throw ApiException.InvalidRequest($"{call.Param("type")} '{type}' is not supported: only \"function\" calls", call.Param("type"));
            var functionElement = call.Element("function") ?? throw ApiException.InvalidRequest($"{call.Param("function")} is missing", call.Param("function"));
            var function = JsonFields.Of(functionElement, call.Param("function"));
            string name = function.String("name") ?? throw ApiException.InvalidRequest($"{function.Param("name")} is missing", function.Param("name"));
            string arguments = function.String("arguments") ?? "{}";
            if (!IsJsonObject(arguments))
                throw ApiException.InvalidRequest($"{function.Param("arguments")} must be a JSON object as a string, e.g. \"{{\\\"city\\\": \\\"Paris\\\"}}\"", function.Param("arguments"));
            result.Add(new ToolCall(id, name, arguments));
        }
        return result;
    }

    /// <summary>The thinking budget in tokens, or null for no thinking.</summary>
    public static int? ThinkingBudget(JsonFields fields)
    {
        string? effort = fields.String("reasoning_effort");
        int? budget = fields.Integer("thinking_budget", 0, 1 << 20, "use a number of tokens from 0 (no thinking) to 1048576");
        if (effort is not null && budget is not null)
            throw ApiException.InvalidRequest("reasoning_effort and thinking_budget both set the thinking budget: send one of them", "thinking_budget");
        if (budget is not null) return budget == 0 ? null : budget;
        return effort switch
        {
            null or "none" or "minimal" => null,
            "low" => ThinkingBudgets.Low,
            "medium" => ThinkingBudgets.Medium,
            "high" => ThinkingBudgets.High,
            _ => throw ApiException.InvalidRequest($"reasoning_effort '{effort}' is not supported: use none, minimal, low, medium or high", "reasoning_effort"),
        };
    }

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex FunctionName();
}
