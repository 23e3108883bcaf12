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
        // The engine is held inside the request's third token until the server has cancelled it (see DisconnectTests).
        await using var s = await DisconnectTests.StartAsync(batching: true);
        var engine = s.Server.Engine;
        await DisconnectTests.DisconnectMidStreamAsync(s.Server, s.Vocabulary.Held); // the client goes away mid-stream
        Assert.Equal(1, engine.Stats.Running);
        Assert.True(engine.Stats.KvBlocksInUse > 0, "the running request holds blocks");
        await Eventually.For(s.Witness.Cancelled, "the server cancels the request of the client that went away");
        s.Vocabulary.Open();
        await ServerHarness.WaitUntilAsync(() => engine.Stats.Running == 0 && engine.Stats.KvBlocksInUse == 0, "the request's blocks are freed");
        Assert.Equal(3, engine.Stats.GeneratedTokensTotal); // stopped at the held token, far short of max_tokens
        using var next = await s.Server.PostAsync("/v1/completions", new { prompt = "hi", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }
}
