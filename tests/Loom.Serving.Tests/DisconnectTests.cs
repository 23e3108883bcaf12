using System.Net;
using System.Text;
using System.Text.Json;

namespace Loom.Serving.Tests;

/// <summary>A client that goes away cancels its request in the engine.</summary>
public sealed class DisconnectTests
{
    // A long context and many tokens, so the request is still far from done when the client leaves.
    private const int ContextLength = 4096;
    private const int MaxTokens = 4000;

    private static string Body(bool stream) =>
        JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = MaxTokens, ignore_eos = true, stream });

    private static async Task AssertCancelledAsync(ServerHarness server)
    {
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Running == 0, "the engine has no running request");
        Assert.True(server.Engine.Stats.GeneratedTokensTotal < MaxTokens,
            $"{server.Engine.Stats.GeneratedTokensTotal} tokens were generated: the request ran to its end instead of being cancelled");
        // The server counts the request once the engine has let it go, a moment after Running drops.
        await ServerHarness.WaitUntilAsync(async () => await MetricAsync(server, "loom_requests_finished_total{outcome=\"cancelled\"}") == 1, "the cancelled request is counted");
        // The server still serves.
        using var next = await server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    private static async Task<double> MetricAsync(ServerHarness server, string sample)
    {
        string text = await server.Http.GetStringAsync("/metrics");
        string line = text.Split('\n').Single(l => l.StartsWith(sample + " ", StringComparison.Ordinal));
        return double.Parse(line[(sample.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task DisconnectingMidStreamCancelsTheRequest()
    {
        await using var server = await ServerHarness.StartAsync(contextLength: ContextLength);
        using (var client = new HttpClient { BaseAddress = server.Server.Address })
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Body(stream: true), Encoding.UTF8, "application/json") };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await using var events = ServerHarness.EventsAsync(response).GetAsyncEnumerator();
            Assert.True(await events.MoveNextAsync());
            Assert.True(await events.MoveNextAsync()); // tokens are flowing
            Assert.Equal(1, server.Engine.Stats.Running);
        } // disposing the client closes the connection mid-stream
        await AssertCancelledAsync(server);
    }

    [Fact]
    public async Task GivingUpOnAJsonRequestCancelsIt()
    {
        await using var server = await ServerHarness.StartAsync(contextLength: ContextLength);
        using var giveUp = new CancellationTokenSource();
        var pending = server.PostAsync("/v1/completions", Body(stream: false), cancellationToken: giveUp.Token);
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.GeneratedTokensTotal > 0, "the request is generating");
        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        await AssertCancelledAsync(server);
    }
}
