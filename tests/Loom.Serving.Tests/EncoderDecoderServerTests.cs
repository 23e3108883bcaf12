using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Inference;
using Loom.Inference.Chat;
using Loom.Inference.Engine;
using OpenAI.Chat;

namespace Loom.Serving.Tests;

/// <summary>
/// <c>loom serve</c> on a T5 encoder-decoder, through either engine: the rendered chat prompt (or the
/// completion prompt) goes to the encoder, and the reply is what decoding it alone without a cache gives.
/// </summary>
public sealed class EncoderDecoderServerTests
{
    private static readonly ChatTurn[] Conversation = [new("system", "Be brief."), new("user", "Tell me a story.")];

    private static ChatMessage[] Messages() => [new SystemChatMessage("Be brief."), new UserChatMessage("Tell me a story.")];

    private const string Prompt = "It is a truth universally acknowledged";

    private static Task<ServerHarness> StartAsync(bool batching) => ServerHarness.StartAsync(encoderDecoder: true, batching: batching);

    /// <summary>The greedy decoding of <paramref name="prompt"/> as encoder input, without a cache, and its text.</summary>
    private static (List<int> Tokens, string Text) NoCache(ServerHarness server, int[] prompt, SamplingOptions sampling)
    {
        var tokens = new TextGenerator(server.Model, server.Vocabulary.EosId, server.Vocabulary.PadId).GenerateWithoutCache(prompt, sampling).ToList();
        return (tokens, server.Vocabulary.Decode([.. tokens]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AChatReplyDecodesTheRenderedPromptThroughTheEncoderAndStreamsTheSameText(bool batching)
    {
        await using var server = await StartAsync(batching);
        Assert.True(server.Model.IsEncoderDecoder);
        int[] prompt = server.Vocabulary.Encode(ChatTemplate.Default.Render(Conversation));
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };

        ChatCompletion reply = await server.Chat().CompleteChatAsync(Messages(), options);
        var expected = await server.ReferenceAsync(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 12, Stop = [ChatTemplate.Default.EndOfTurn] });
        var noCache = NoCache(server, prompt, new SamplingOptions { Temperature = 0, MaxTokens = 12 });
        Assert.Equal(expected.Text, reply.Content.Single().Text);
        Assert.Equal(noCache.Text, reply.Content.Single().Text); // the whole rendered conversation is the encoder's input
        Assert.Equal(noCache.Tokens.Count, reply.Usage.OutputTokenCount);
        Assert.Equal(prompt.Length, reply.Usage.InputTokenCount);
        Assert.Equal(ChatMessageRole.Assistant, reply.Role);
        // A decoder-only model would continue the prompt; the encoder-decoder's reply is not a continuation of it.
        var withoutSystem = NoCache(server, server.Vocabulary.Encode(ChatTemplate.Default.Render([Conversation[1]])), new SamplingOptions { Temperature = 0, MaxTokens = 12 });
        Assert.NotEqual(withoutSystem.Tokens, noCache.Tokens);

        var streamed = new StringBuilder();
        var finishes = new List<ChatFinishReason>();
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(Messages(), options))
        {
            updates++;
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            if (update.FinishReason is { } finish) finishes.Add(finish);
            usage ??= update.Usage;
        }
        Assert.Equal(reply.Content.Single().Text, streamed.ToString());
        Assert.Equal([reply.FinishReason], finishes);
        Assert.True(updates > 2, $"only {updates} updates: the reply was not streamed");
        Assert.NotNull(usage);
        Assert.Equal(reply.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(reply.Usage.InputTokenCount, usage.InputTokenCount);
        await ServerHarness.WaitUntilAsync(() => server.Engine.Stats.Running == 0 && server.Engine.Stats.KvBlocksInUse == 0, "the requests are retired and their blocks freed");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ACompletionIsTheDecodingOfThePromptAndStreamsTheSameText(bool batching)
    {
        await using var server = await StartAsync(batching);
        var body = new Dictionary<string, object> { ["model"] = ServerHarness.ModelName, ["prompt"] = Prompt, ["max_tokens"] = 10, ["temperature"] = 0, ["ignore_eos"] = true };
        using var plain = await server.PostAsync("/v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        var json = await ServerHarness.JsonAsync(plain);
        var choice = json.GetProperty("choices").EnumerateArray().Single();
        string text = choice.GetProperty("text").GetString()!;
        var noCache = NoCache(server, server.Vocabulary.Encode(Prompt), new SamplingOptions { Temperature = 0, MaxTokens = 10, StopAtEos = false });
        Assert.Equal(noCache.Text, text);
        Assert.False(text.StartsWith(Prompt, StringComparison.Ordinal)); // the answer, not the prompt and its continuation
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(Prompt.Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(10, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        body["stream"] = true;
        body["stream_options"] = new { include_usage = true };
        using var response = await server.PostAsync("/v1/completions", body);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ServerHarness.EventsAsync(response).ToListAsync();
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0]).ToList();
        Assert.Equal(10, withChoices.Count); // one chunk per token
        Assert.Equal(text, string.Concat(withChoices.Select(c => c.GetProperty("text").GetString())));
        Assert.Equal("length", withChoices[^1].GetProperty("finish_reason").GetString());
        var usage = Assert.Single(chunks, c => c.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object).GetProperty("usage");
        Assert.Equal(10, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Prompt.Length, usage.GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ConcurrentCompletionsThroughTheBatchingEngineEqualEachDecodedAlone()
    {
        await using var server = await StartAsync(batching: true);
        var prompts = Enumerable.Range(0, 8).Select(i => $"Question {i}: {new string('?', 3 * i)} why").ToArray();
        var responses = await Task.WhenAll(prompts.Select(async p =>
        {
            using var r = await server.PostAsync("/v1/completions", new { prompt = p, max_tokens = 4 + p.Length % 7, temperature = 0, ignore_eos = true });
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            return (await ServerHarness.JsonAsync(r)).GetProperty("choices")[0].GetProperty("text").GetString()!;
        }));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(NoCache(server, server.Vocabulary.Encode(prompts[i]), new SamplingOptions { Temperature = 0, MaxTokens = 4 + prompts[i].Length % 7, StopAtEos = false }).Text, responses[i]);
        Assert.True(responses.Distinct().Count() > 1, "every prompt got the same answer: the encoder made no difference");
        var engine = Assert.IsType<ContinuousBatchingEngine>(server.Engine);
        await ServerHarness.WaitUntilAsync(() => engine.Stats.Running == 0, "the requests are retired");
        Assert.Equal(prompts.Length, engine.EncoderRuns);
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task APromptMayFillTheEncoderButNotExceedIt(bool batching)
    {
        await using var server = await StartAsync(batching);
        Assert.True(server.Engine.IsEncoderDecoder);
        int context = server.Engine.ContextLength;
        // A decoder-only model needs room for the reply after the prompt; an encoder-decoder's reply has a context of its own.
        using (var full = await server.PostAsync("/v1/completions", new { prompt = Enumerable.Range(0, context).Select(i => 65 + i % 26).ToArray(), max_tokens = 3, temperature = 0, ignore_eos = true }))
        {
            Assert.Equal(HttpStatusCode.OK, full.StatusCode);
            var usage = (await ServerHarness.JsonAsync(full)).GetProperty("usage");
            Assert.Equal(context, usage.GetProperty("prompt_tokens").GetInt32());
            Assert.Equal(3, usage.GetProperty("completion_tokens").GetInt32());
        }
        using var tooLong = await server.PostAsync("/v1/completions", new { prompt = new string('a', context + 1), max_tokens = 3 });
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        var error = (await ServerHarness.JsonAsync(tooLong)).GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Contains("encoder takes at most", error.GetProperty("message").GetString());
        using var chat = await server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = new string('a', context) } } });
        Assert.Equal(HttpStatusCode.BadRequest, chat.StatusCode);
        Assert.Equal("messages", (await ServerHarness.JsonAsync(chat)).GetProperty("error").GetProperty("param").GetString());
    }
}
