using System.Text.Json;
using Loom.Inference.Chat;

namespace Loom.Inference.Tests.Chat;

public class ChatToolTemplateTests
{
    private static readonly ToolDeclaration Weather = new("get_weather", "The weather in a city",
        JsonDocument.Parse("""{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}""").RootElement.Clone());

    private const string ToolsBlock =
        "# Tools\nYou may call one or more of these functions:\n<tools>\n"
        + """{"type":"function","function":{"name":"get_weather","description":"The weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}"""
        + "\n</tools>\nTo call a function, write <tool_call>{\"name\": <function name>, \"arguments\": <arguments object>}</tool_call>";

    [Fact]
    public void ToolsAreListedInASystemTurnThatOpensThePrompt()
    {
        string prompt = ChatTemplate.Default.Render([new ChatTurn("user", "Hi")], new ChatPromptOptions { Tools = [Weather] });
        Assert.Equal($"<|system|>\n{ToolsBlock}<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n", prompt);
    }

    [Fact]
    public void ToolsJoinTheFirstSystemTurn()
    {
        string prompt = ChatTemplate.ChatMl.Render([new ChatTurn("system", "Be brief."), new ChatTurn("user", "Hi")], new ChatPromptOptions { Tools = [Weather] });
        Assert.Equal($"<|im_start|>system\nBe brief.\n\n{ToolsBlock}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void CallsFollowTheAssistantsTextAndResultsAreToolTurns()
    {
        ChatTurn[] conversation =
        [
            new("user", "Weather in Paris and Rome?"),
            new("assistant", "Let me look.") { ToolCalls = [new ToolCall("call_1", "get_weather", """{"city":"Paris"}"""), new ToolCall("call_2", "get_weather", """{ "city": "Rome" }""")] },
            new("tool", "Sunny") { ToolCallId = "call_1" },
            new("tool", "Rain") { ToolCallId = "call_2" },
        ];
        string prompt = ChatTemplate.Default.Render(conversation);
        Assert.Equal(
            "<|user|>\nWeather in Paris and Rome?<|end|>\n"
            + "<|assistant|>\nLet me look.\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}</tool_call>\n"
            + "<tool_call>{\"name\": \"get_weather\", \"arguments\": { \"city\": \"Rome\" }}</tool_call><|end|>\n"
            + "<|tool|>\nSunny<|end|>\n<|tool|>\nRain<|end|>\n<|assistant|>\n",
            prompt);
        var calledOnly = ChatTemplate.Default.Render([new ChatTurn("assistant", "") { ToolCalls = [new ToolCall("c", "f", "{}")] }]);
        Assert.StartsWith("<|assistant|>\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call><|end|>\n", calledOnly);
    }

    [Fact]
    public void ThinkingOpensTheReply()
    {
        var options = new ChatPromptOptions { Thinking = true };
        Assert.Equal("<|user|>\nHi<|end|>\n<|assistant|>\n<think>\n", ChatTemplate.Default.Render([new ChatTurn("user", "Hi")], options));
        Assert.Equal(ChatTemplate.Default.Render([new ChatTurn("user", "Hi")]), ChatTemplate.Default.Render([new ChatTurn("user", "Hi")], ChatPromptOptions.None));
    }

    [Fact]
    public void BrokenToolTurnsAreRefused()
    {
        var noId = Assert.Throws<ArgumentException>(() => ChatTemplate.Default.Render([new ChatTurn("tool", "42")]));
        Assert.Contains("ToolCallId", noId.Message);
        Assert.Throws<ArgumentException>(() => ChatTemplate.Default.Render([new ChatTurn("user", "x") { ToolCalls = [new ToolCall("c", "f", "{}")] }]));
        var badArguments = Assert.Throws<ArgumentException>(() => ChatTemplate.Default.Render([new ChatTurn("assistant", "") { ToolCalls = [new ToolCall("c", "f", "[1]")] }]));
        Assert.Contains("JSON object", badArguments.Message);
    }

    [Fact]
    public void AHuggingFaceTemplateGetsToolsCallsResultsAndThinking()
    {
        const string source =
            "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }}({{ t.function.parameters.properties | tojson }});{% endfor %}{{ '\\n' }}{% endif %}"
            + "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
            + "{% if m.tool_calls %}{% for c in m.tool_calls %}<call {{ c.id }} {{ c.function.name }} {{ c.function.arguments | tojson }}>{% endfor %}{% endif %}"
            + "{% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}{{ '\\n' }}{% endfor %}"
            + "{% if add_generation_prompt %}[assistant]{% if enable_thinking %}<think>\n{% endif %}{% endif %}";
        var template = new HuggingFaceChatTemplate(source, null, null, "<|end|>");
        ChatTurn[] conversation =
        [
            new("user", "Paris?"),
            new("assistant", "") { ToolCalls = [new ToolCall("call_1", "get_weather", """{"city":"Paris"}""")] },
            new("tool", "Sunny") { ToolCallId = "call_1" },
        ];
        string prompt = template.Render(conversation, new ChatPromptOptions { Tools = [Weather], Thinking = true });
        Assert.Equal(
            "TOOLS:get_weather({\"city\": {\"type\": \"string\"}});\n[user]Paris?\n[assistant]<call call_1 get_weather {\"city\": \"Paris\"}>\n[tool]Sunny(call_1)\n[assistant]<think>\n",
            prompt);
        // A template that does not open thinking itself gets <think> appended.
        var plain = new HuggingFaceChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}|", null, null, "<|end|>");
        Assert.Equal("Hi|<think>\n", plain.Render([new ChatTurn("user", "Hi")], new ChatPromptOptions { Thinking = true }));
        Assert.Equal("Hi|", plain.Render([new ChatTurn("user", "Hi")]));
    }
}
