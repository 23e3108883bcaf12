using System.ClientModel;
using System.Text;
using Loom.Inference;
using Loom.Inference.Chat;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

namespace Loom.Serving.Tests;

/// <summary>/v1/chat/completions through the official OpenAI .NET client.</summary>
public sealed class ChatCompletionsEndpointTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private ServerHarness Server => fixture.Harness;

    private static readonly ChatTurn[] Conversation = [new("system", "Be brief."), new("user", "Tell me a story.")];

    private static ChatMessage[] Messages() => [new SystemChatMessage("Be brief."), new UserChatMessage("Tell me a story.")];

    private int[] PromptIds() => Server.Vocabulary.Encode(ChatTemplate.Default.Render(Conversation));

    private static SamplingOptions Greedy(int maxTokens, params string[] stop) =>
        new() { Temperature = 0, MaxTokens = maxTokens, Stop = [.. stop, ChatTemplate.Default.EndOfTurn] };

    private static ChatFinishReason Expected(FinishReason finish) => finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    [Fact]
    public async Task AReplyIsWhatTheEngineGeneratesWithUsageAndFinishReason()
    {
        var expected = await Server.ReferenceAsync(PromptIds(), Greedy(12));
        ChatCompletion reply = await Server.Chat().CompleteChatAsync(Messages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 });
        Assert.Equal(ChatMessageRole.Assistant, reply.Role);
        Assert.Equal(expected.Text, reply.Content.Single().Text);
        Assert.Equal(Expected(expected.Finish), reply.FinishReason);
        Assert.Equal(PromptIds().Length, reply.Usage.InputTokenCount);
        Assert.Equal(expected.CompletionTokens, reply.Usage.OutputTokenCount);
        Assert.Equal(reply.Usage.InputTokenCount + reply.Usage.OutputTokenCount, reply.Usage.TotalTokenCount);
        Assert.Equal(ServerHarness.ModelName, reply.Model);
        Assert.StartsWith("chatcmpl-", reply.Id);
    }

    [Fact]
    public async Task StreamingGivesTheSameReplyInPiecesThenUsage()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        ChatCompletion whole = await Server.Chat().CompleteChatAsync(Messages(), options);
        var text = new StringBuilder();
        var finishes = new List<ChatFinishReason>();
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in Server.Chat().CompleteChatStreamingAsync(Messages(), options))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            if (update.FinishReason is { } finish) finishes.Add(finish);
            usage ??= update.Usage;
        }
        Assert.Equal(whole.Content.Single().Text, text.ToString());
        Assert.Equal([whole.FinishReason], finishes);
        Assert.True(updates > 2, $"only {updates} updates: the reply was not streamed");
        Assert.NotNull(usage); // the client asks for stream_options.include_usage
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
    }

    [Fact]
    public async Task AStopSequenceEndsTheReplyBeforeIt()
    {
        var free = await Server.ReferenceAsync(PromptIds(), Greedy(24));
        Assert.True(free.Text.Length >= 8, $"the reference reply '{free.Text}' is too short to pick a stop sequence from");
        string stop = free.Text.Substring(5, 2);
        ChatCompletion reply = await Server.Chat().CompleteChatAsync(Messages(),
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24, StopSequences = { stop } });
        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)], reply.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Stop, reply.FinishReason);
    }

    [Fact]
    public async Task LogProbabilitiesComeWithTheirAlternatives()
    {
        ChatCompletion reply = await Server.Chat().CompleteChatAsync(Messages(),
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 });
        var tokens = reply.ContentTokenLogProbabilities;
        Assert.Equal(reply.Usage.OutputTokenCount, tokens.Count);
        foreach (var token in tokens)
        {
            Assert.True(token.LogProbability <= 0);
            Assert.Equal(3, token.TopLogProbabilities.Count);
            Assert.True(token.TopLogProbabilities[0].LogProbability >= token.TopLogProbabilities[2].LogProbability);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(token.TopLogProbabilities[0].LogProbability, token.LogProbability, 5);
        }
    }

    [Fact]
    public async Task TheOfficialClientSeesErrorsAsExceptionsWithTheirStatus()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => Server.Chat().CompleteChatAsync(Messages(), new ChatCompletionOptions { Temperature = 5 }));
        Assert.Equal(400, error.Status);
        Assert.Contains("temperature", error.Message);
        var wrongModel = new ChatClient("gpt-4o", new ApiKeyCredential("x"), new OpenAI.OpenAIClientOptions { Endpoint = Server.Server.ApiBase });
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => wrongModel.CompleteChatAsync(Messages()))).Status);
        ChatCompletion after = await Server.Chat().CompleteChatAsync(Messages(), new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.True(after.Usage.OutputTokenCount <= 2);
    }
}
