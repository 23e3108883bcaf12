using System.Text.Json;
using Loom.Inference.Engine;
using Loom.Serving.Metrics;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving;

/// <summary>What every endpoint reads: the engine, the options, the metrics and when the server started.</summary>
internal sealed class ServerState(IGenerationEngine engine, ServerOptions options, ServerMetrics metrics)
{
    public IGenerationEngine Engine => engine;

    public ServerOptions Options => options;

    /// <summary>The options' chat template, or the one the model's vocabulary brings.</summary>
    public Loom.Inference.Chat.IChatTemplate ChatTemplate { get; } = options.ChatTemplate ?? Loom.Inference.Chat.ChatTemplate.ForVocabulary(engine.Vocabulary);

    /// <summary>The tool-call and thinking constraints of the engine's vocabulary (built once: they cache per-token data).</summary>
    public Loom.Inference.Chat.ChatConstraintFactory ChatConstraints => field ??= new(Constraints); // a race builds two, one wins: harmless

    public ServerMetrics Metrics => metrics;

    /// <summary>Compiles the requests' <c>response_format</c> grammars over the engine's vocabulary (its token trie is built on first use).</summary>
    public Loom.Inference.Constraints.TokenConstraintFactory Constraints { get; } = new(engine.Vocabulary);

    public long StartedUnixSeconds { get; } = metrics.Time.GetUtcNow().ToUnixTimeSeconds();

    public long UnixNow() => metrics.Time.GetUtcNow().ToUnixTimeSeconds();

    /// <summary>Reads the request body as one JSON document.</summary>
    /// <exception cref="ApiException">400: the body is not JSON.</exception>
    public static async Task<JsonDocument> ReadBodyAsync(HttpContext http)
    {
        try
        {
            return await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw ApiException.InvalidJson(e.Message.Split('\n')[0]);
        }
    }

    /// <summary>Refuses (404) a request whose "model" names another model; a request without one gets the served model.</summary>
    public void CheckModel(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) return; // the request reader refuses it with a 400
        string? model = JsonFields.Of(body).String("model");
        if (model is not null && model != engine.ModelName) throw ApiException.ModelNotFound(model, engine.ModelName);
    }
}
