using System.ClientModel;
using System.Text.Json;
using OpenAI.Chat;

namespace Loom.Serving.Tests;

/// <summary>
/// response_format json_schema and json_object through the official OpenAI client: a tiny random model (never trained on
/// JSON) answers with JSON that parses and fits the schema, ending with EOS within max_tokens, on both engines.
/// </summary>
public sealed class StructuredOutputTests
{
    private const string Schema = """
        {"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer"},"tag":{"enum":["red","green"]},
         "note":{"type":"string"},"xs":{"type":"array","items":{"type":["number","null"]},"maxItems":3}},
         "required":["ok","n","tag","note"],"additionalProperties":false}
        """;

    private static void AssertFitsTheSchema(string text)
    {
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal(JsonValueKind.Object, root.ValueKind);
        Assert.Subset(new HashSet<string> { "ok", "n", "tag", "note", "xs" }, root.EnumerateObject().Select(p => p.Name).ToHashSet());
        Assert.True(root.GetProperty("ok").ValueKind is JsonValueKind.True or JsonValueKind.False, text);
        Assert.True(root.GetProperty("n").TryGetInt64(out _), text);
        Assert.Contains(root.GetProperty("tag").GetString(), (string[])["red", "green"]);
        Assert.Equal(JsonValueKind.String, root.GetProperty("note").ValueKind);
        if (root.TryGetProperty("xs", out var xs))
        {
            Assert.InRange(xs.GetArrayLength(), 0, 3);
            Assert.All(xs.EnumerateArray(), x => Assert.True(x.ValueKind is JsonValueKind.Number or JsonValueKind.Null, text));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task JsonSchemaRepliesParseAndFitTheSchema(bool batching)
    {
        await using var server = await ServerHarness.StartAsync(contextLength: 256, batching: batching);
        var format = ChatResponseFormat.CreateJsonSchemaFormat("answer", BinaryData.FromString(Schema), jsonSchemaIsStrict: true);
        foreach (float temperature in (float[])[0f, 1f, 1f, 1f])
        {
            var options = new ChatCompletionOptions { ResponseFormat = format, Temperature = temperature, MaxOutputTokenCount = 80 };
            var reply = (await server.Chat().CompleteChatAsync([new UserChatMessage("Describe a thing.")], options)).Value;
            string text = reply.Content.Single().Text;
            AssertFitsTheSchema(text);
            Assert.Equal(ChatFinishReason.Stop, reply.FinishReason); // EOS, forced where the text is whole, not the length limit
            Assert.InRange(reply.Usage.OutputTokenCount, 1, 79);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task JsonObjectRepliesAreObjectsEvenWithFewTokens(bool batching)
    {
        await using var server = await ServerHarness.StartAsync(contextLength: 256, batching: batching);
        foreach (int maxTokens in (int[])[8, 30, 60])
        {
            var options = new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), Temperature = 1, MaxOutputTokenCount = maxTokens };
            var reply = (await server.Chat().CompleteChatAsync([new UserChatMessage("Anything.")], options)).Value;
            using var doc = JsonDocument.Parse(reply.Content.Single().Text);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
            Assert.Equal(ChatFinishReason.Stop, reply.FinishReason);
        }
        // Streaming carries the same constraint.
        var streamed = new System.Text.StringBuilder();
        await foreach (var update in server.Chat().CompleteChatStreamingAsync([new UserChatMessage("Anything.")],
            new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), MaxOutputTokenCount = 40 }))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        using (var doc = JsonDocument.Parse(streamed.ToString())) Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    public static TheoryData<string, string, string> BadFormats => new()
    {
        // response_format, param, message
        { """{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}}}""",
          "response_format.json_schema.schema.properties.age.minimum", "'minimum' is not supported" },
        { """{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":[]}}}""",
          "response_format.json_schema.schema.properties", "'properties' must be an object" },
        { """{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"a":{}},"required":["b"]}}}""",
          "response_format.json_schema.schema.required", "'b'" },
        { """{"type":"json_schema","json_schema":{"name":"p","schema":{"oneOf":[]}}}""", "response_format.json_schema.schema.oneOf", "'oneOf' is not supported" },
        { """{"type":"json_schema","json_schema":{"name":"p"}}""", "response_format.json_schema.schema", "required" },
        { """{"type":"json_schema","json_schema":{"schema":{}}}""", "response_format.json_schema.name", "required" },
        { """{"type":"json_schema"}""", "response_format.json_schema", "required" },
        { """{"type":"xml"}""", "response_format.type", "'xml' is not supported" },
        { "\"json\"", "response_format", "object" },
    };

    [Theory]
    [MemberData(nameof(BadFormats))]
    public async Task AnUnsupportedOrMalformedFormatIsA400NamingTheField(string format, string param, string message)
    {
        await using var server = await ServerHarness.StartAsync();
        using var response = await server.PostAsync("/v1/chat/completions", $$"""{"messages":[{"role":"user","content":"hi"}],"response_format":{{format}}}""");
        Assert.Equal(400, (int)response.StatusCode);
        var error = (await ServerHarness.JsonAsync(response)).GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.StartsWith(param, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Contains(message, error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheOfficialClientSeesTheSchemaErrorAsA400()
    {
        await using var server = await ServerHarness.StartAsync();
        var format = ChatResponseFormat.CreateJsonSchemaFormat("p", BinaryData.FromString("""{"type":"string","pattern":"^a"}"""), jsonSchemaIsStrict: true);
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            server.Chat().CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { ResponseFormat = format }));
        Assert.Equal(400, e.Status);
        Assert.Contains("response_format.json_schema.schema.pattern: 'pattern' is not supported", e.Message, StringComparison.Ordinal);
    }
}
