using System.Text.Json;
using Loom.Data;
using Loom.Inference.Chat;
using Loom.Inference.Engine;
using Loom.Models;
using Microsoft.Extensions.AI;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Chat;

public class LoomChatClientToolTests
{
    public enum City
    {
        Paris,
        Rome,
    }

    // A long context: the prompt lists the tools' schemas, byte by byte.
    private static DecoderLm TinyModel(IVocabulary vocabulary)
    {
        using var generator = new Generator(7);
        return new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64,
            MaxSequenceLength = 1024, SharedEmbeddings = false,
        }, generator: generator);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AJsonSchemaResponseFormatGivesJsonThatValidatesFromAnUntrainedModel(bool streaming)
    {
        var vocabulary = new ByteVocabulary();
        using var model = TinyModel(vocabulary);
        using var engine = new ContinuousBatchingEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        using var schema = JsonDocument.Parse("""
            {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
             "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}}, "required": ["name", "age", "tags"],
             "additionalProperties": false}
            """);
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema.RootElement, "person"), Temperature = 1, Seed = 3, MaxOutputTokens = 120 };
        var text = new System.Text.StringBuilder();
        if (streaming)
            await foreach (var update in client.GetStreamingResponseAsync("Describe someone.", options)) text.Append(update.Text);
        else
            text.Append((await client.GetResponseAsync("Describe someone.", options)).Text);
        using var reply = JsonDocument.Parse(text.ToString()); // an untrained model: only the constraint makes this JSON
        Assert.Null(Constraints.SchemaValidator.Validate(reply.RootElement, schema.RootElement));
    }

    [Fact]
    public async Task FunctionInvocationRunsARealFunctionAndGetsAFinalAnswer()
    {
        var vocabulary = new ByteVocabulary();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var loom = new LoomChatClient(engine);
        var asked = new List<(City City, bool Celsius)>();
        var weather = AIFunctionFactory.Create((City city, bool celsius) =>
        {
            asked.Add((city, celsius));
            return $"Sunny in {city}, {(celsius ? "21 C" : "70 F")}";
        }, "get_weather", "The weather in a city");
        using var client = new ChatClientBuilder(loom).UseFunctionInvocation().Build();
        var options = new ChatOptions
        {
            Tools = [weather],
            ToolMode = ChatToolMode.RequireSpecific("get_weather"), // the untrained model calls because it must
            Temperature = 0,
            MaxOutputTokens = 150,
        };

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Paris?")], options);

        var call = Assert.Single(asked); // the C# function ran once, with arguments the schema allows
        Assert.Contains(call.City, Enum.GetValues<City>());
        var messages = response.Messages.ToList();
        var requested = Assert.Single(messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", requested.Name);
        Assert.StartsWith("call_", requested.CallId);
        var result = Assert.Single(messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(requested.CallId, result.CallId);
        Assert.Contains($"Sunny in {call.City}", result.Result?.ToString());
        // The last message is the answer: text, no call (the loop's next request is tool mode auto).
        var answer = messages[^1];
        Assert.Equal(ChatRole.Assistant, answer.Role);
        Assert.Empty(answer.Contents.OfType<FunctionCallContent>());
        Assert.False(string.IsNullOrEmpty(answer.Text));
        Assert.NotEqual(ChatFinishReason.ToolCalls, response.FinishReason);
    }

    [Fact]
    public async Task StreamedCallsComeWholeWithTheLastUpdate()
    {
        var vocabulary = new ByteVocabulary();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        var options = new ChatOptions
        {
            Tools = [AIFunctionFactory.Create((bool on) => on, "set_flag", "Sets the flag")],
            ToolMode = ChatToolMode.RequireAny,
            AllowMultipleToolCalls = false,
            Temperature = 0,
            MaxOutputTokens = 150,
        };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Flag on")], options)) updates.Add(update);
        var calls = updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>().ToList();
        var call = Assert.Single(calls);
        Assert.Same(updates[^1], updates.Single(u => u.Contents.Contains(call)));
        Assert.Equal("set_flag", call.Name);
        Assert.True(call.Arguments!["on"] is JsonElement { ValueKind: JsonValueKind.True or JsonValueKind.False });
        Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
        var whole = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Flag on")], options);
        Assert.Equal(JsonSerializer.Serialize(call.Arguments), JsonSerializer.Serialize(whole.Messages.Single().Contents.OfType<FunctionCallContent>().Single().Arguments));
    }

    [Fact]
    public void ToolMessagesRenderAsToolTurnsAndCallsAsTheAssistantsCalls()
    {
        var vocabulary = new ByteVocabulary();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine, ChatTemplate.Default);
        string prompt = client.RenderPrompt(
        [
            new ChatMessage(ChatRole.User, "Paris?"),
            new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("call_1", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris" })]),
            new ChatMessage(ChatRole.Tool, [new FunctionResultContent("call_1", "Sunny")]),
        ]);
        Assert.Equal(
            "<|user|>\nParis?<|end|>\n<|assistant|>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}</tool_call><|end|>\n"
            + "<|tool|>\nSunny<|end|>\n<|assistant|>\n",
            prompt);
    }

    [Fact]
    public async Task ReasoningEffortThinksWithinItsBudgetAndCountsTheTokens()
    {
        var vocabulary = new ByteVocabulary();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine, ChatTemplate.Default);
        var options = new ChatOptions { Reasoning = new ReasoningOptions { Effort = ReasoningEffort.Low }, Temperature = 0, MaxOutputTokens = 20 };
        Assert.EndsWith("<|assistant|>\n<think>\n", client.RenderPrompt([new ChatMessage(ChatRole.User, "Hi")], options));
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], options);
        // The budget (512) is more than the 20 tokens allowed: all of them are thinking.
        Assert.Equal(20, response.Usage!.ReasoningTokenCount);
        Assert.Equal(20, response.Usage.OutputTokenCount);
        Assert.NotEmpty(response.Messages.Single().Contents.OfType<TextReasoningContent>().Single().Text);
        Assert.Equal("", response.Text);
    }
}
