using System.Text;
using Loom.Inference;
using Loom.Inference.Chat;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving;

/// <summary>
/// POST /v1/chat/completions: the assistant's reply to a conversation, as one JSON object or as <c>chat.completion.chunk</c> events.
/// A reply that thought has its thinking apart (<c>reasoning_content</c>, and <c>usage.completion_tokens_details.reasoning_tokens</c>);
/// with tools, its <c>&lt;tool_call&gt;</c> blocks become <c>tool_calls</c> (streamed as OpenAI's tool-call deltas) and it finishes with
/// <c>tool_calls</c>.
/// </summary>
internal static class ChatCompletionsEndpoint
{
    public static async Task HandleAsync(HttpContext http, ServerState state)
    {
        long arrived = state.Metrics.Time.GetTimestamp();
        using var body = await ServerState.ReadBodyAsync(http).ConfigureAwait(false);
        state.CheckModel(body.RootElement);
        var call = ChatRequestReader.Read(body.RootElement, state.Engine.Vocabulary, state.Engine.ContextLength, state.ChatTemplate, state.Engine.IsEncoderDecoder,
            state.Engine.ImageInput, state.ChatConstraints);
        await using var run = await EngineRun.StartAsync(state.Engine, call.Request, state.Metrics, arrived, http.RequestAborted).ConfigureAwait(false);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = state.UnixNow();
        string model = state.Engine.ModelName;
        bool wantLogProbs = call.Request.Sampling.LogProbs is not null;
        int promptTokens = call.Request.Prompt.Count, completionTokens = 0;
        var shape = call.Reply;
        var parser = shape is null ? null : new ReplyParser(shape.ThinkingOn);
        int? ReasoningTokens() => shape is { ThinkingOn: true } ? shape.Thinking?.ThinkingTokens ?? 0 : null;
        string? Finish(FinishReason? reason, int calls) =>
            calls > 0 && reason is FinishReason.Stop or FinishReason.StopSequence ? "tool_calls" : OpenAiJson.FinishReason(reason);

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
                if (parser is null)
                {
                    // Every token gets its chunk (content "" while its text is held back); the last chunk
                    // carries the finish reason and, when it has no text left, an empty delta.
                    string? content = update.FinishReason is null || update.Text.Length > 0 ? update.Text : null;
                    await events.WriteAsync(Chunk(new ChatMessage(null, content), logProbs, OpenAiJson.FinishReason(update.FinishReason))).ConfigureAwait(false);
                    continue;
                }
                var pieces = parser.Push(update.Text).ToList();
                if (update.FinishReason is not null) pieces.AddRange(parser.Finish());
                var deltas = Deltas(pieces);
                if (deltas.Count == 0 && (update.FinishReason is null || logProbs is not null)) deltas.Add(new ChatMessage(null, update.FinishReason is null ? "" : null));
                for (int i = 0; i < deltas.Count; i++)
                    await events.WriteAsync(Chunk(deltas[i], i == 0 ? logProbs : null, update.FinishReason is not null && i == deltas.Count - 1 ? Finish(update.FinishReason, parser.ToolCallCount) : null)).ConfigureAwait(false);
                if (update.FinishReason is not null && deltas.Count == 0)
                    await events.WriteAsync(Chunk(new ChatMessage(null, null), null, Finish(update.FinishReason, parser.ToolCallCount))).ConfigureAwait(false);
            }
            if (call.IncludeUsage)
                await events.WriteAsync(new ChatCompletion(id, "chat.completion.chunk", created, model, [], Usage.Of(promptTokens, completionTokens, ReasoningTokens()))).ConfigureAwait(false);
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
        var message = new ChatMessage("assistant", text.ToString());
        ParsedReply? reply = null;
        if (shape is not null)
        {
            reply = ReplyParser.Parse(text.ToString(), shape.ThinkingOn);
            message = new ChatMessage("assistant", reply.ToolCalls.Count > 0 && reply.Content.Length == 0 ? null : reply.Content)
            {
                ReasoningContent = reply.Reasoning,
                ToolCalls = reply.ToolCalls.Count > 0 ? [.. reply.ToolCalls.Select(c => new ChatToolCallJson(null, c.Id, "function", new ChatFunctionJson(c.Name, c.Arguments)))] : null,
            };
        }
        var choice = new ChatChoice(0, message, null, wantLogProbs ? new ChatLogProbs(tokenLogProbs) : null, Finish(finish, reply?.ToolCalls.Count ?? 0));
        await http.Response.WriteAsJsonAsync(new ChatCompletion(id, "chat.completion", created, model, [choice], Usage.Of(promptTokens, completionTokens, ReasoningTokens())),
            OpenAiJson.Options, http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The stream deltas of reply pieces: runs of thinking or content text joined, each tool-call start or arguments piece its own delta.</summary>
    private static List<ChatMessage> Deltas(IEnumerable<ReplyPiece> pieces)
    {
        var deltas = new List<ChatMessage>();
        foreach (var piece in pieces)
        {
            var last = deltas.Count > 0 ? deltas[^1] : null;
            if (piece.Reasoning is { } reasoning)
            {
                if (last is { ReasoningContent: { } r, ToolCalls: null }) deltas[^1] = last with { ReasoningContent = r + reasoning };
                else deltas.Add(new ChatMessage(null, null) { ReasoningContent = reasoning });
            }
            else if (piece.Content is { } content)
            {
                if (last is { Content: { } c, ToolCalls: null }) deltas[^1] = last with { Content = c + content };
                else deltas.Add(new ChatMessage(null, content));
            }
            else if (piece.CallName is { } name)
                deltas.Add(new ChatMessage(null, null) { ToolCalls = [new ChatToolCallJson(piece.CallIndex, piece.CallId, "function", new ChatFunctionJson(name, ""))] });
            else if (piece.Arguments is { } arguments)
                deltas.Add(new ChatMessage(null, null) { ToolCalls = [new ChatToolCallJson(piece.CallIndex, null, null, new ChatFunctionJson(null, arguments))] });
        }
        return deltas;
    }
}
