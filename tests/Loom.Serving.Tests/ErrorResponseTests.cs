using System.Net;
using System.Text.Json;

namespace Loom.Serving.Tests;

/// <summary>Bad requests get OpenAI-style JSON errors, and the server goes on serving.</summary>
public sealed class ErrorResponseTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private ServerHarness Server => fixture.Harness;

    public static TheoryData<string, string, int, string?, string?> BadRequests => new()
    {
        // path, body, status, param, code
        { "/v1/completions", "{\"prompt\": \"hi\", ", 400, null, "invalid_json" },
        { "/v1/completions", "", 400, null, "invalid_json" },
        { "/v1/completions", "[1, 2]", 400, null, null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": -5}", 400, "max_tokens", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": \"ten\"}", 400, "max_tokens", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"temperature\": 2.5}", 400, "temperature", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"top_p\": 0}", 400, "top_p", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"n\": 2}", 400, "n", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400, "stop", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"presence_penalty\": 3}", 400, "presence_penalty", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"logprobs\": 50}", 400, "logprobs", null },
        { "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt", null },
        { "/v1/completions", "{\"prompt\": [1, 999]}", 400, "prompt", null },
        { "/v1/completions", "{\"max_tokens\": 3}", 400, "prompt", null },
        { "/v1/completions", "{\"prompt\": \"hi\", \"model\": \"gpt-4o\"}", 404, "model", "model_not_found" },
        { "/v1/completions", "{\"prompt\": \"" + new string('x', 200) + "\"}", 400, "prompt", "context_length_exceeded" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"" + new string('x', 200) + "\"}]}", 400, "messages", "context_length_exceeded" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", 400, "messages[0].role", null },
        { "/v1/chat/completions", "{\"messages\": []}", 400, "messages", null },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": 0}", 400, "max_completion_tokens", null },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_logprobs\": 2}", 400, "top_logprobs", null },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"model\": \"other\"}", 404, "model", "model_not_found" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task ABadRequestGetsAJsonErrorAndTheServerKeepsServing(string path, string body, int status, string? param, string? code)
    {
        using var response = await Server.PostAsync(path, body);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = (await ServerHarness.JsonAsync(response)).GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString());
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());

        using var next = await Server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    [Fact]
    public async Task UnknownPathsAndWrongMethodsGetJsonErrors()
    {
        using var unknown = await Server.Http.GetAsync("/v1/embeddings");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Contains("/v1/embeddings", (await ServerHarness.JsonAsync(unknown)).GetProperty("error").GetProperty("message").GetString());
        using var wrongMethod = await Server.Http.GetAsync("/v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.True((await ServerHarness.JsonAsync(wrongMethod)).TryGetProperty("error", out _));
    }
}
