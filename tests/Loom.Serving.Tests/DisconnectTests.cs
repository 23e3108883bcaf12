using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Data;

namespace Loom.Serving.Tests;

/// <summary>A client that goes away cancels its request in the engine.</summary>
/// <remarks>
/// Deterministic on any machine: the engine is held inside the request's third token (see
/// <see cref="HoldingVocabulary"/>) until the server has cancelled the request, so the request cannot run to
/// its end before the disconnect is noticed, however fast the model is or however slowly the server notices.
/// </remarks>
public sealed class DisconnectTests
{
    // A long context and many tokens: a request that is not cancelled runs far past the held token.
    private const int ContextLength = 4096;
    private const int MaxTokens = 4000;
    private const string Prompt = "Once upon a time";
    private const int HeldToken = 3;

    private static string Body(bool stream) =>
        JsonSerializer.Serialize(new { prompt = Prompt, max_tokens = MaxTokens, ignore_eos = true, stream });

    /// <summary>A server whose engine holds requests at their third token, and sees the server's cancellations.</summary>
    internal sealed record Setup(ServerHarness Server, HoldingVocabulary Vocabulary, CancellationWitness Witness) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Vocabulary.Open(); // never leave the engine blocked, even when an assertion failed
            await Server.DisposeAsync();
        }
    }

    internal static async Task<Setup> StartAsync(bool batching)
    {
        // The request's detokenizer decodes its prompt once, then once per generated token: call 1 + HeldToken is the held token's.
        var vocabulary = new HoldingVocabulary(1 + HeldToken);
        CancellationWitness? witness = null;
        var server = await ServerHarness.StartAsync(contextLength: ContextLength, batching: batching, vocabulary: vocabulary,
            wrap: engine => witness = new CancellationWitness(engine));
        return new Setup(server, vocabulary, witness!);
    }

    /// <summary>The engine is inside the request, with tokens 1..held-1 generated.</summary>
    private static async Task AssertHeldMidRequestAsync(Setup s)
    {
        await Eventually.For(s.Vocabulary.Held, "the engine reaches the request's third token");
        Assert.Equal(1, s.Server.Engine.Stats.Running);
        Assert.Equal(HeldToken - 1, s.Server.Engine.Stats.GeneratedTokensTotal);
    }

    /// <summary>After the client left: the server cancels the request, and the engine stops it at the held token.</summary>
    private static async Task AssertCancelledAsync(Setup s)
    {
        var server = s.Server;
        await Eventually.For(s.Witness.Cancelled, "the server cancels the request of the client that went away");
        s.Vocabulary.Open();
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Running == 0, "the engine has no running request");
        // The held token completes; nothing after it is generated: the request was cancelled, not run to its end.
        Assert.Equal(HeldToken, server.Engine.Stats.GeneratedTokensTotal);
        Assert.Equal(0, server.Engine.Stats.KvBlocksInUse);
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

    /// <summary>Streams a request, reads its first token, and goes away while the engine is held inside it.</summary>
    internal static async Task DisconnectMidStreamAsync(ServerHarness server, Task held)
    {
        using var client = new HttpClient { BaseAddress = server.Server.Address };
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Body(stream: true), Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var events = ServerHarness.EventsAsync(response).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync()); // tokens are flowing
        await Eventually.For(held, "the engine reaches the request's third token");
    } // disposing the response and the client closes the connection mid-stream

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DisconnectingMidStreamCancelsTheRequest(bool batching)
    {
        await using var s = await StartAsync(batching);
        await DisconnectMidStreamAsync(s.Server, s.Vocabulary.Held);
        await AssertHeldMidRequestAsync(s);
        await AssertCancelledAsync(s);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivingUpOnAJsonRequestCancelsIt(bool batching)
    {
        await using var s = await StartAsync(batching);
        var server = s.Server;
        using var giveUp = new CancellationTokenSource();
        var pending = server.PostAsync("/v1/completions", Body(stream: false), cancellationToken: giveUp.Token);
        await AssertHeldMidRequestAsync(s);
        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        await AssertCancelledAsync(s);
    }
}
