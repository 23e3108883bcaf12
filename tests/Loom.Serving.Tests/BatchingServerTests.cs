using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Inference;
using Loom.Inference.Chat;
using OpenAI.Chat;

namespace Loom.Serving.Tests;

/// <summary>The server over the continuous-batching engine: concurrent replies equal each decoded alone; a disconnect frees its KV blocks.</summary>
public sealed class BatchingServerTests
{
    [Fact]
    public async Task ConcurrentChatsThroughTheOfficialClientEqualTheSequentialReference()
    {
        await using var server = await ServerHarness.StartAsync(batching: true);
        var questions = Enumerable.Range(0, 16).Select(i => $"Tell me story number {i}{new string('!', i % 5)}").ToArray();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 };
        var replies = await Task.WhenAll(questions.Select(q =>
            server.Chat().CompleteChatAsync([new SystemChatMessage("Be brief."), new UserChatMessage(q)], options)));
        var streamed = new StringBuilder();
        await foreach (var update in server.Chat().CompleteChatStreamingAsync([new SystemChatMessage("Be brief."), new UserChatMessage(questions[3])], options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        for (int i = 0; i < questions.Length; i++)
        {
            int[] prompt = server.Vocabulary.Encode(ChatTemplate.Default.Render([new("system", "Be brief."), new("user", questions[i])]));
            var expected = await server.ReferenceAsync(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 10, Stop = [ChatTemplate.Default.EndOfTurn] });
            Assert.Equal(expected.Text, replies[i].Value.Content.Single().Text);
            Assert.Equal(expected.CompletionTokens, replies[i].Value.Usage.OutputTokenCount);
            if (i == 3) Assert.Equal(expected.Text, streamed.ToString());
        }
    }

    [Fact]
    public async Task ADisconnectMidStreamFreesTheRequestsBlocks()
    {
        await using var server = await ServerHarness.StartAsync(contextLength: 2048, batching: true);
        using (var client = new HttpClient { BaseAddress = server.Server.Address })
        {
            string body = JsonSerializer.Serialize(new { prompt = "Once upon a time", max_tokens = 2000, ignore_eos = true, stream = true });
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await using var events = ServerHarness.EventsAsync(response).GetAsyncEnumerator();
            for (int i = 0; i < 3; i++) Assert.True(await events.MoveNextAsync()); // tokens are flowing
            Assert.True(server.Engine.Stats.KvBlocksInUse > 0);
        } // the client goes away mid-stream
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Running == 0 && server.Engine.Stats.KvBlocksInUse == 0, "the request's blocks are freed");
        Assert.True(server.Engine.Stats.GeneratedTokensTotal < 2000);
        using var next = await server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }
}
