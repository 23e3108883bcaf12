using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using OpenAI.Chat;

namespace Loom.Serving.Tests;

public sealed class ApiKeyFixture : IAsyncLifetime
{
    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync(apiKeys: ["sk-first", "sk-second"]);

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

/// <summary>With API keys configured, every endpoint but /health needs a valid bearer key.</summary>
public sealed class ApiKeyTests(ApiKeyFixture fixture) : IClassFixture<ApiKeyFixture>
{
    private ServerHarness Server => fixture.Harness;

    private async Task<HttpResponseMessage> GetAsync(string path, string? authorization)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (authorization is not null) request.Headers.Authorization = AuthenticationHeaderValue.Parse(authorization);
        return await Server.Http.SendAsync(request);
    }

    [Theory]
    [InlineData("/v1/models")]
    [InlineData("/metrics")]
    [InlineData("/v1/nothing-here")]
    public async Task AMissingOrWrongKeyIsRefusedWith401(string path)
    {
        foreach (string? authorization in new[] { null, "Bearer sk-third", "Bearer sk-firs", "Basic c2stZmlyc3Q=" })
        {
            using var response = await GetAsync(path, authorization);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            var error = (await ServerHarness.JsonAsync(response)).GetProperty("error");
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        }
        using var completion = await Server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.Unauthorized, completion.StatusCode);
    }

    [Fact]
    public async Task EveryConfiguredKeyIsAccepted()
    {
        foreach (string key in new[] { "sk-first", "sk-second" })
        {
            using var models = await GetAsync("/v1/models", $"Bearer {key}");
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
            using var completion = await Server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 }, key);
            Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        }
    }

    [Fact]
    public async Task HealthNeedsNoKey()
    {
        using var health = await GetAsync("/health", null);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task TheOfficialClientGets401ForAWrongKeyAndARepliesForARightOne()
    {
        ChatMessage[] messages = [new UserChatMessage("hi")];
        var error = await Assert.ThrowsAsync<ClientResultException>(() => Server.Chat("sk-wrong").CompleteChatAsync(messages));
        Assert.Equal(401, error.Status);
        ChatCompletion reply = await Server.Chat("sk-second").CompleteChatAsync(messages, new ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.True(reply.Usage.OutputTokenCount <= 3);
    }
}
