using System.Net;

namespace Loom.Serving.Tests;

/// <summary>A full queue gives 429; shutdown lets running requests finish, up to its timeout.</summary>
public sealed class OverloadAndShutdownTests
{
    [Fact]
    public async Task AFullQueueGives429AndTheQueuedRequestsStillFinish()
    {
        GatedEngine? gated = null;
        await using var server = await ServerHarness.StartAsync(maxQueue: 1, wrap: e => gated = new GatedEngine(e));
        var running = server.PostAsync("/v1/completions", new { prompt = "first", max_tokens = 4 });
        await ServerHarness.WaitUntilAsync(() => gated!.Held == 1, "the first request holds the engine");
        var queued = server.PostAsync("/v1/completions", new { prompt = "second", max_tokens = 4 });
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Waiting == 1, "the second request waits in the queue");

        using (var refused = await server.PostAsync("/v1/completions", new { prompt = "third", max_tokens = 4 }))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            var error = (await ServerHarness.JsonAsync(refused)).GetProperty("error");
            Assert.Equal("rate_limit_error", error.GetProperty("type").GetString());
            Assert.Contains("waiting", error.GetProperty("message").GetString());
        }

        gated!.Open();
        using var first = await running;
        using var second = await queued;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        using var after = await server.PostAsync("/v1/completions", new { prompt = "fourth", max_tokens = 4 });
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task ShutdownStopsAcceptingButLetsARunningStreamFinish()
    {
        GatedEngine? gated = null;
        await using var server = await ServerHarness.StartAsync(wrap: e => gated = new GatedEngine(e));
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt": "Once", "max_tokens": 8, "ignore_eos": true, "stream": true}""", System.Text.Encoding.UTF8, "application/json"),
        };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await ServerHarness.WaitUntilAsync(() => gated!.Held == 1, "the stream is running");

        var stopping = server.Server.StopAsync();
        // New connections are refused while the running request goes on.
        await ServerHarness.WaitUntilAsync(async () =>
        {
            using var fresh = new HttpClient { BaseAddress = server.Server.Address };
            try
            {
                using var _ = await fresh.GetAsync("/health");
                return false;
            }
            catch (HttpRequestException)
            {
                return true;
            }
        }, "the server refuses new connections");
        Assert.False(stopping.IsCompleted);

        gated!.Open();
        var events = await ServerHarness.EventsAsync(response).ToListAsync();
        Assert.Equal("[DONE]", events[^1]);
        Assert.Equal(8, events.Count - 1); // every token arrived
        await stopping;
    }

    [Fact]
    public async Task ShutdownCutsOffRequestsThatOutlastTheTimeoutAndCancelsThem()
    {
        GatedEngine? gated = null;
        await using var server = await ServerHarness.StartAsync(wrap: e => gated = new GatedEngine(e), shutdownTimeout: TimeSpan.FromMilliseconds(200));
        var pending = server.PostAsync("/v1/completions", new { prompt = "forever", max_tokens = 8 });
        await ServerHarness.WaitUntilAsync(() => gated!.Held == 1, "the request is running");
        await server.Server.StopAsync(); // the gate never opens: the request is cut off after 200 ms
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Running == 0, "the cut-off request is cancelled in the engine");
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => pending);
    }
}
