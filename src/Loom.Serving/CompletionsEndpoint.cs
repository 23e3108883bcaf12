using System.Text;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving;

/// <summary>POST /v1/completions: continue a prompt, as one JSON object or as <c>text_completion</c> events.</summary>
internal static class CompletionsEndpoint
{
    public static async Task HandleAsync(HttpContext http, ServerState state)
    {
        long arrived = state.Metrics.Time.GetTimestamp();
        using var body = await ServerState.ReadBodyAsync(http).ConfigureAwait(false);
        state.CheckModel(body.RootElement);
        var call = CompletionRequestReader.Read(body.RootElement, state.Engine.Vocabulary, state.Engine.ContextLength, state.Engine.IsEncoderDecoder);
        await using var run = await EngineRun.StartAsync(state.Engine, call.Request, state.Metrics, arrived, http.RequestAborted).ConfigureAwait(false);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = state.UnixNow();
        string model = state.Engine.ModelName;
        bool wantLogProbs = call.Request.Sampling.LogProbs is not null;
        int offset = call.TextOffset;
        int promptTokens = call.Request.Prompt.Count, completionTokens = 0;

        if (call.Stream)
        {
            var events = ServerSentEvents.Start(http);
            await foreach (var update in run.ReadAllAsync().ConfigureAwait(false))
            {
                if (update.FinishReason == FinishReason.Cancelled) return; // the client is gone
                (promptTokens, completionTokens) = (update.PromptTokens, update.CompletionTokens);
                var logProbs = wantLogProbs ? OpenAiJson.CompletionLogProbs(update.LogProbs ?? [], offset) : null;
                offset += update.Text.Length;
                var choice = new CompletionChoice(update.Text, 0, logProbs, OpenAiJson.FinishReason(update.FinishReason));
                await events.WriteAsync(new Completion(id, "text_completion", created, model, [choice], null)).ConfigureAwait(false);
            }
            if (call.IncludeUsage)
                await events.WriteAsync(new Completion(id, "text_completion", created, model, [], Usage.Of(promptTokens, completionTokens))).ConfigureAwait(false);
            await events.DoneAsync().ConfigureAwait(false);
            return;
        }

        var text = new StringBuilder();
        var tokenLogProbs = new List<TokenLogProb>();
        FinishReason? finish = null;
        await foreach (var update in run.ReadAllAsync().ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.LogProbs is { } logProbs) tokenLogProbs.AddRange(logProbs);
            (promptTokens, completionTokens, finish) = (update.PromptTokens, update.CompletionTokens, update.FinishReason);
        }
        if (finish is null or FinishReason.Cancelled) return; // the client is gone
        var whole = new CompletionChoice(text.ToString(), 0, wantLogProbs ? OpenAiJson.CompletionLogProbs(tokenLogProbs, call.TextOffset) : null, OpenAiJson.FinishReason(finish));
        await http.Response.WriteAsJsonAsync(new Completion(id, "text_completion", created, model, [whole], Usage.Of(promptTokens, completionTokens)),
            OpenAiJson.Options, http.RequestAborted).ConfigureAwait(false);
    }
}
