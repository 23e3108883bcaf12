using System.Text;
using Loom.Inference;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving;

/// <summary>POST /v1/chat/completions: the assistant's reply to a conversation, as one JSON object or as <c>chat.completion.chunk</c> events.</summary>
internal static class ChatCompletionsEndpoint
{
    public static async Task HandleAsync(HttpContext http, ServerState state)
    {
        long arrived = state.Metrics.Time.GetTimestamp();
        using var body = await ServerState.ReadBodyAsync(http).ConfigureAwait(false);
        state.CheckModel(body.RootElement);
        var call = ChatRequestReader.Read(body.RootElement, state.Engine.Vocabulary, state.Engine.ContextLength, state.ChatTemplate, state.Engine.IsEncoderDecoder, state.Engine.ImageInput, state.Constraints);
        await using var run = await EngineRun.StartAsync(state.Engine, call.Request, state.Metrics, arrived, http.RequestAborted).ConfigureAwait(false);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = state.UnixNow();
        string model = state.Engine.ModelName;
        bool wantLogProbs = call.Request.Sampling.LogProbs is not null;
        int promptTokens = call.Request.Prompt.Count, completionTokens = 0;

        if (call.Stream)
        {
            var events = ServerSentEvents.Start(http);
            ChatCompletion Chunk(ChatMessage delta, ChatLogProbs? logProbs, string? finish) =>
                new(id, "chat.completion.chunk", created, model, [new ChatChoice(0, null, delta, logProbs, finish)], null);

            await events.WriteAsync(Chunk(new ChatMessage("assistant", ""), null, null)).ConfigureAwait(false);
            await foreach (var update in run.ReadAllAsync().ConfigureAwait(false))
            {
                if (update.FinishReason == FinishReason.Cancelled) return; // the client is gone
                (promptTokens, completionTokens) = (update.PromptTokens, update.CompletionTokens);
                var logProbs = wantLogProbs ? new ChatLogProbs([.. (update.LogProbs ?? []).Select(OpenAiJson.ChatLogProb)]) : null;
                // Every token gets its chunk (content "" while its text is held back); the last chunk
                // carries the finish reason and, when it has no text left, an empty delta.
                string? content = update.FinishReason is null || update.Text.Length > 0 ? update.Text : null;
                await events.WriteAsync(Chunk(new ChatMessage(null, content), logProbs, OpenAiJson.FinishReason(update.FinishReason))).ConfigureAwait(false);
            }
            if (call.IncludeUsage)
                await events.WriteAsync(new ChatCompletion(id, "chat.completion.chunk", created, model, [], Usage.Of(promptTokens, completionTokens))).ConfigureAwait(false);
            await events.DoneAsync().ConfigureAwait(false);
            return;
        }

        var text = new StringBuilder();
        var tokenLogProbs = new List<ChatTokenLogProb>();
        FinishReason? finish = null;
        await foreach (var update in run.ReadAllAsync().ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.LogProbs is { } logProbs) tokenLogProbs.AddRange(logProbs.Select(OpenAiJson.ChatLogProb));
            (promptTokens, completionTokens, finish) = (update.PromptTokens, update.CompletionTokens, update.FinishReason);
        }
        if (finish is null or FinishReason.Cancelled) return; // the client is gone
        var choice = new ChatChoice(0, new ChatMessage("assistant", text.ToString()), null, wantLogProbs ? new ChatLogProbs(tokenLogProbs) : null, OpenAiJson.FinishReason(finish));
        await http.Response.WriteAsJsonAsync(new ChatCompletion(id, "chat.completion", created, model, [choice], Usage.Of(promptTokens, completionTokens)),
            OpenAiJson.Options, http.RequestAborted).ConfigureAwait(false);
    }
}
