using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

namespace Loom.Serving.Tests;

/// <summary>A tiny server with a long context, for prompts that list tools.</summary>
public sealed class ToolServerFixture : IAsyncLifetime
{
    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync(contextLength: 1024);

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

/// <summary>
/// OpenAI-style tool calling through the official OpenAI .NET client: the tiny model is untrained, so its calls are
/// there because <c>tool_choice</c> (required or a named function) constrains the reply to valid calls.
/// </summary>
public sealed class ToolCallingTests(ToolServerFixture fixture) : IClassFixture<ToolServerFixture>
{
    // A seed whose sampled reply to ParallelBody takes two calls. Trying seeds 0 to 39 gave 2 calls for 6, 8, 22, 25, 26 and 37,
    // one call for 5 seeds, and 3 calls cut off by max_tokens for the rest (the grammar allows up to 8).
    private const int ParallelSeed = 6;

    private const string WeatherSchema = """
        {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}, "celsius": {"type": "boolean"}},
         "required": ["city", "celsius"], "additionalProperties": false}
        """;

    private const string TimeSchema = """
        {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": false}
        """;

    private ServerHarness Server => fixture.Harness;

    private static ChatTool Weather => ChatTool.CreateFunctionTool("get_weather", "The weather in a city", BinaryData.FromString(WeatherSchema), functionSchemaIsStrict: true);

    private static ChatTool Time => ChatTool.CreateFunctionTool("get_time", "The time in a zone", BinaryData.FromString(TimeSchema), functionSchemaIsStrict: true);

    private static List<ChatMessage> Question() => [new UserChatMessage("What is the weather in Paris?")];

    private static ChatCompletionOptions Options(ChatToolChoice choice, bool parallel = false) => new()
    {
        Tools = { Weather, Time },
        ToolChoice = choice,
        AllowParallelToolCalls = parallel,
        Temperature = 0,
        MaxOutputTokenCount = 120,
    };

    /// <summary>Checks a call's arguments against its function's schema (the enums and booleans above).</summary>
    private static void AssertValid(string name, string arguments)
    {
        using var document = JsonDocument.Parse(arguments);
        var args = document.RootElement;
        Assert.Equal(JsonValueKind.Object, args.ValueKind);
        switch (name)
        {
            case "get_weather":
                Assert.Equal(["city", "celsius"], args.EnumerateObject().Select(p => p.Name));
                Assert.Contains(args.GetProperty("city").GetString(), new[] { "Paris", "Rome", "Oslo" });
                Assert.True(args.GetProperty("celsius").ValueKind is JsonValueKind.True or JsonValueKind.False);
                break;
            case "get_time":
                Assert.Equal(["zone"], args.EnumerateObject().Select(p => p.Name));
                Assert.Contains(args.GetProperty("zone").GetString(), new[] { "UTC", "CET" });
                break;
            default:
                Assert.Fail($"a call to '{name}', which is not one of the tools");
                break;
        }
    }

    [Fact]
    public async Task ARequiredCallIsAValidCallToOneOfTheTools()
    {
        ChatCompletion reply = await Server.Chat().CompleteChatAsync(Question(), Options(ChatToolChoice.CreateRequiredChoice()));
        Assert.Equal(ChatFinishReason.ToolCalls, reply.FinishReason);
        var call = Assert.Single(reply.ToolCalls);
        Assert.StartsWith("call_", call.Id);
        Assert.Equal(ChatToolCallKind.Function, call.Kind);
        AssertValid(call.FunctionName, call.FunctionArguments.ToString());
        Assert.Empty(reply.Content);
    }

    [Fact]
    public async Task ANamedFunctionIsTheOneCalled()
    {
        ChatCompletion reply = await Server.Chat().CompleteChatAsync(Question(), Options(ChatToolChoice.CreateFunctionChoice("get_time")));
        Assert.Equal(ChatFinishReason.ToolCalls, reply.FinishReason);
        var call = Assert.Single(reply.ToolCalls);
        Assert.Equal("get_time", call.FunctionName);
        AssertValid(call.FunctionName, call.FunctionArguments.ToString());
    }

    [Fact]
    public async Task AStreamedCallArrivesAsToolCallDeltasWithItsArgumentsInPieces()
    {
        var options = Options(ChatToolChoice.CreateFunctionChoice("get_weather"));
        ChatCompletion whole = await Server.Chat().CompleteChatAsync(Question(), options);
        var arguments = new StringBuilder();
        string? id = null, name = null;
        int pieces = 0;
        var finishes = new List<ChatFinishReason>();
        await foreach (var update in Server.Chat().CompleteChatStreamingAsync(Question(), options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                Assert.Equal(0, part.Index);
                id ??= part.ToolCallId;
                name ??= part.FunctionName;
                if (part.FunctionArgumentsUpdate is { } piece && piece.ToArray().Length > 0)
                {
                    arguments.Append(piece.ToString());
                    pieces++;
                }
            }
            Assert.All(update.ContentUpdate, c => Assert.Equal("", c.Text));
            if (update.FinishReason is { } finish) finishes.Add(finish);
        }
        Assert.StartsWith("call_", id);
        Assert.Equal("get_weather", name);
        Assert.Equal(whole.ToolCalls.Single().FunctionArguments.ToString(), arguments.ToString());
        Assert.True(pieces > 1, $"the arguments came in {pieces} piece(s): they were not streamed");
        AssertValid("get_weather", arguments.ToString());
        Assert.Equal([ChatFinishReason.ToolCalls], finishes);
    }

    private static object ParallelBody(bool stream, int seed = ParallelSeed) => new
    {
        messages = new[] { new { role = "user", content = "Weather in Paris and the time in UTC?" } },
        tools = new object[]
        {
            new { type = "function", function = new { name = "get_weather", parameters = JsonDocument.Parse(WeatherSchema).RootElement, strict = true } },
            new { type = "function", function = new { name = "get_time", parameters = JsonDocument.Parse(TimeSchema).RootElement, strict = true } },
        },
        tool_choice = "required",
        parallel_tool_calls = true,
        seed,
        temperature = 1.0,
        max_tokens = 240,
        stream,
    };

    [Fact]
    public async Task ParallelCallsComeAsOneReplyWithSeveralCalls()
    {
        var body = await ServerHarness.JsonAsync(await Server.PostAsync("/v1/chat/completions", ParallelBody(stream: false)));
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var calls = choice.GetProperty("message").GetProperty("tool_calls").EnumerateArray().ToList();
        Assert.Equal(2, calls.Count);
        Assert.Equal(2, calls.Select(c => c.GetProperty("id").GetString()).Distinct().Count());
        foreach (var call in calls)
            AssertValid(call.GetProperty("function").GetProperty("name").GetString()!, call.GetProperty("function").GetProperty("arguments").GetString()!);

        // Streamed, the same seed gives the same calls, each under its own index.
        var streamed = new SortedDictionary<int, (string Name, StringBuilder Arguments)>();
        string? finish = null;
        using var response = await Server.PostAsync("/v1/chat/completions", ParallelBody(stream: true));
        await foreach (string data in ServerHarness.EventsAsync(response))
        {
            if (data == "[DONE]") break;
            using var chunk = JsonDocument.Parse(data);
            var delta = chunk.RootElement.GetProperty("choices")[0];
            if (delta.GetProperty("finish_reason").GetString() is { } f) finish = f;
            if (!delta.GetProperty("delta").TryGetProperty("tool_calls", out var parts)) continue;
            foreach (var part in parts.EnumerateArray())
            {
                int index = part.GetProperty("index").GetInt32();
                var function = part.GetProperty("function");
                if (function.TryGetProperty("name", out var name)) streamed[index] = (name.GetString()!, new StringBuilder());
                if (function.TryGetProperty("arguments", out var arguments)) streamed[index].Arguments.Append(arguments.GetString());
            }
        }
        Assert.Equal("tool_calls", finish);
        Assert.Equal(calls.Select(c => (c.GetProperty("function").GetProperty("name").GetString(), c.GetProperty("function").GetProperty("arguments").GetString())),
            streamed.Values.Select(c => ((string?)c.Name, (string?)c.Arguments.ToString())));
    }

    [Fact]
    public async Task ResultsSentBackInToolMessagesGetAFinalAnswer()
    {
        var client = Server.Chat();
        var messages = Question();
        ChatCompletion first = await client.CompleteChatAsync(messages, Options(ChatToolChoice.CreateFunctionChoice("get_weather")));
        var call = Assert.Single(first.ToolCalls);
        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, "Sunny, 21 degrees"));

        var options = Options(ChatToolChoice.CreateAutoChoice()); // free text; a call would have to be valid
        options.MaxOutputTokenCount = 16;
        ChatCompletion answer = await client.CompleteChatAsync(messages, options);
        Assert.Empty(answer.ToolCalls);
        Assert.NotEqual(ChatFinishReason.ToolCalls, answer.FinishReason);
        Assert.NotEmpty(answer.Content.Single().Text);
        // The second prompt holds the call and its result: it is longer than the first by at least their text.
        Assert.True(answer.Usage.InputTokenCount > first.Usage.InputTokenCount + "Sunny, 21 degrees".Length,
            $"the prompt grew from {first.Usage.InputTokenCount} to {answer.Usage.InputTokenCount} tokens only");
    }

    [Fact]
    public async Task ToolChoiceNoneOffersNoTools()
    {
        var options = Options(ChatToolChoice.CreateNoneChoice());
        options.MaxOutputTokenCount = 8;
        ChatCompletion none = await Server.Chat().CompleteChatAsync(Question(), options);
        ChatCompletion plain = await Server.Chat().CompleteChatAsync(Question(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 });
        Assert.Equal(plain.Usage.InputTokenCount, none.Usage.InputTokenCount); // the prompt does not list them
        Assert.Equal(plain.Content.Single().Text, none.Content.Single().Text);
        Assert.Empty(none.ToolCalls);
        ChatCompletion auto = await Server.Chat().CompleteChatAsync(Question(), Options(ChatToolChoice.CreateAutoChoice()));
        Assert.True(auto.Usage.InputTokenCount > none.Usage.InputTokenCount + WeatherSchema.Length, "auto lists the tools in the prompt");
    }

    [Theory]
    [InlineData("""[{"type": "function", "function": {"description": "no name"}}]""", null, "tools[0].function.name", "tools[0].function.name is missing")]
    [InlineData("""[{"type": "function", "function": {"name": "f", "parameters": "x"}}]""", null, "tools[0].function.parameters", "must be a JSON schema object")]
    [InlineData("""[{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]""", null, "tools[1].function.name", "unique")]
    [InlineData("""[{"type": "function", "function": {"name": "f"}}]""", """{"type": "function", "function": {"name": "g"}}""", "tool_choice.function.name", "'g'")]
    [InlineData("""[{"type": "retrieval"}]""", null, "tools[0].type", "only \"function\"")]
    [InlineData("""[{"type": "function", "function": {"name": "bad name"}}]""", null, "tools[0].function.name", "not a valid function name")]
    [InlineData("null", "\"required\"", "tool_choice", "no tools")]
    public async Task MalformedToolsAreRefusedByName(string tools, string? choice, string param, string message)
    {
        string json = $$"""{"messages": [{"role": "user", "content": "hi"}], "tools": {{tools}}{{(choice is null ? "" : $", \"tool_choice\": {choice}")}}}""";
        using var response = await Server.PostAsync("/v1/chat/completions", json);
        Assert.Equal(400, (int)response.StatusCode);
        var error = (await ServerHarness.JsonAsync(response)).GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(message, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task AStrictSchemaLoomCannotEnforceIsRefusedNamingTheField()
    {
        string json = """
            {"messages": [{"role": "user", "content": "hi"}],
             "tools": [{"type": "function", "function": {"name": "f", "strict": true,
                        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 7}}, "required": ["n"]}}}]}
            """;
        using var response = await Server.PostAsync("/v1/chat/completions", json);
        Assert.Equal(400, (int)response.StatusCode);
        var error = (await ServerHarness.JsonAsync(response)).GetProperty("error");
        Assert.Equal("tools[0].function.parameters", error.GetProperty("param").GetString());
        Assert.Contains("multipleOf", error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("""[{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]""", "messages[1].tool_call_id")]
    [InlineData("""[{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]""",
        "messages[0].tool_calls[0].function.arguments")]
    [InlineData("""[{"role": "user", "content": "hi", "tool_calls": []}]""", "messages[0].tool_calls")]
    public async Task MalformedToolMessagesAreRefusedByName(string messages, string param)
    {
        using var response = await Server.PostAsync("/v1/chat/completions", $$"""{"messages": {{messages}}}""");
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal(param, (await ServerHarness.JsonAsync(response)).GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task ThinkingIsReturnedApartAndCountedAsReasoningTokens()
    {
        // A budget of 6 tokens: the model thinks 6 tokens, then its closing is forced; the answer follows.
        string json = """{"messages": [{"role": "user", "content": "hi"}], "thinking_budget": 6, "max_tokens": 40, "temperature": 0}""";
        var body = await ServerHarness.JsonAsync(await Server.PostAsync("/v1/chat/completions", json));
        var message = body.GetProperty("choices")[0].GetProperty("message");
        var usage = body.GetProperty("usage");
        int reasoning = usage.GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32();
        string thought = message.GetProperty("reasoning_content").GetString()!;
        Assert.DoesNotContain("</think>", thought);
        Assert.DoesNotContain("</think>", message.GetProperty("content").GetString()!);
        // Bytes: each thinking token is one character; the forced closing is "\n</think>\n" (10 tokens) unless the model closed first.
        Assert.True(reasoning <= 6 + 10, $"{reasoning} reasoning tokens for a budget of 6");
        Assert.True(reasoning < usage.GetProperty("completion_tokens").GetInt32() || body.GetProperty("choices")[0].GetProperty("finish_reason").GetString() == "length");
        Assert.Equal(6 + 10, reasoning); // an untrained model does not write "</think>" in 6 bytes by chance at temperature 0

        // Streamed: the same thinking as reasoning_content deltas, the same answer as content deltas.
        string streamJson = json.Replace("\"temperature\": 0", "\"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}");
        var streamedThought = new StringBuilder();
        var streamedContent = new StringBuilder();
        int? streamedReasoning = null;
        using var response = await Server.PostAsync("/v1/chat/completions", streamJson);
        await foreach (string data in ServerHarness.EventsAsync(response))
        {
            if (data == "[DONE]") break;
            using var chunk = JsonDocument.Parse(data);
            if (chunk.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
                streamedReasoning = u.GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32();
            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                var delta = choice.GetProperty("delta");
                if (delta.TryGetProperty("reasoning_content", out var r)) streamedThought.Append(r.GetString());
                if (delta.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) streamedContent.Append(c.GetString());
            }
        }
        Assert.Equal(thought, streamedThought.ToString());
        Assert.Equal(message.GetProperty("content").GetString(), streamedContent.ToString());
        Assert.Equal(reasoning, streamedReasoning);
    }

    [Theory]
    [InlineData("\"reasoning_effort\": \"extreme\"", "reasoning_effort")]
    [InlineData("\"reasoning_effort\": \"low\", \"thinking_budget\": 5", "thinking_budget")]
    [InlineData("\"thinking_budget\": -1", "thinking_budget")]
    public async Task BadThinkingFieldsAreRefusedByName(string fields, string param)
    {
        using var response = await Server.PostAsync("/v1/chat/completions", $$"""{"messages": [{"role": "user", "content": "hi"}], {{fields}}}""");
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal(param, (await ServerHarness.JsonAsync(response)).GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task WithoutThinkingThereAreNoReasoningFields()
    {
        string json = """{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none", "max_tokens": 4, "temperature": 0}""";
        var body = await ServerHarness.JsonAsync(await Server.PostAsync("/v1/chat/completions", json));
        Assert.False(body.GetProperty("choices")[0].GetProperty("message").TryGetProperty("reasoning_content", out _));
        Assert.False(body.GetProperty("usage").TryGetProperty("completion_tokens_details", out _));
    }
}
