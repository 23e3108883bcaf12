using System.Text.Json;
using Loom.Inference;

namespace Loom.Serving.OpenAi;

/// <summary>A request parsed into what the engine runs and how the reply is sent.</summary>
/// <param name="Request">The prompt's tokens and the sampling options.</param>
/// <param name="Stream">Send server-sent events rather than one JSON object.</param>
/// <param name="IncludeUsage">With <paramref name="Stream"/>: end with a chunk that carries the usage (OpenAI's stream_options.include_usage).</param>
/// <param name="TextOffset">The prompt's length in characters: where the completion's text starts (completions' logprobs.text_offset).</param>
internal sealed record GenerationCall(Inference.Engine.GenerationRequest Request, bool Stream, bool IncludeUsage, int TextOffset = 0)
{
    /// <summary>How a chat reply's text is split (thinking, tool calls); null: the text is the reply.</summary>
    public ChatReplyShape? Reply { get; init; }
}

/// <summary>
/// How a chat reply is read: whether it opens with a thinking segment (then <see cref="Thinking"/> reports it once the request
/// runs) and whether its tool calls are parsed.
/// </summary>
internal sealed class ChatReplyShape(bool thinking, bool toolCalls)
{
    public bool ThinkingOn => thinking;

    public bool ToolCalls => toolCalls;

    /// <summary>The request's thinking constraint, set when the engine creates it.</summary>
    public Inference.Chat.ThinkingBudgetConstraint? Thinking { get; set; }
}

/// <summary>The request fields both endpoints share: sampling, stop sequences, max tokens, streaming.</summary>
internal static class SamplingFields
{
    /// <summary>Temperature, top_p, top_k (an extension; -1 or 0 = off), seed, penalties, ignore_eos (an extension); refuses n or best_of other than 1 and a logit_bias.</summary>
    public static SamplingOptions Read(JsonFields fields, int maxTokens, IReadOnlyList<string> stop, int? logProbs)
    {
        if (fields.Integer("n") is long n && n != 1)
            throw ApiException.InvalidRequest($"n = {n} is not supported: this server returns one choice per request (send n requests instead)", "n");
        if (fields.Integer("best_of") is long bestOf && bestOf != 1)
            throw ApiException.InvalidRequest($"best_of = {bestOf} is not supported: leave it out or set it to 1", "best_of");
        if (fields.Element("logit_bias") is { } bias && (bias.ValueKind != JsonValueKind.Object || bias.EnumerateObject().Any()))
            throw ApiException.InvalidRequest("logit_bias is not supported: leave it out", "logit_bias");
        double temperature = fields.Number("temperature", 0, 2) ?? 1.0;
        double topP = fields.Number("top_p", 0, 1) ?? 1.0;
        if (topP == 0) throw ApiException.InvalidRequest("top_p = 0 is out of range: use a number above 0 and at most 1", "top_p");
        int topK = fields.Integer("top_k", -1, int.MaxValue, "use -1 or 0 (off) or a positive integer") ?? 0;
        return new SamplingOptions
        {
            MaxTokens = maxTokens,
            Temperature = temperature,
            TopP = topP,
            TopK = Math.Max(topK, 0),
            Seed = fields.Integer("seed"),
            PresencePenalty = fields.Number("presence_penalty", -2, 2) ?? 0,
            FrequencyPenalty = fields.Number("frequency_penalty", -2, 2) ?? 0,
            StopAtEos = !(fields.Bool("ignore_eos") ?? false),
            Stop = stop,
            LogProbs = logProbs,
        };
    }

    /// <summary>The first of <paramref name="names"/> that is set (chat has max_completion_tokens and the older max_tokens); at least 1.</summary>
    public static int? MaxTokens(JsonFields fields, params string[] names)
    {
        foreach (string name in names)
            if (fields.Integer(name, 1, int.MaxValue, "use a positive integer (the most tokens to generate)") is int value)
                return value;
        return null;
    }

    /// <summary><c>stop</c>: a string or an array of up to <paramref name="max"/> non-empty strings.</summary>
    public static IReadOnlyList<string> Stop(JsonFields fields, int max, string limitReason)
    {
        var stops = fields.Element("stop") switch
        {
            null => [],
            { ValueKind: JsonValueKind.String } s => new List<string> { s.GetString()! },
            { ValueKind: JsonValueKind.Array } a => a.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String
                ? e.GetString()!
                : throw fields.WrongType("stop", "a string or an array of strings", a)).ToList(),
            var other => throw fields.WrongType("stop", "a string or an array of strings", other.Value),
        };
        if (stops.Count > max)
            throw ApiException.InvalidRequest($"stop has {stops.Count} sequences; {limitReason}", "stop");
        if (stops.Any(string.IsNullOrEmpty))
            throw ApiException.InvalidRequest("stop sequences must not be empty strings", "stop");
        return stops;
    }

    /// <summary><c>stream</c> and <c>stream_options.include_usage</c>.</summary>
    public static (bool Stream, bool IncludeUsage) Streaming(JsonFields fields)
    {
        bool stream = fields.Bool("stream") ?? false;
        bool includeUsage = false;
        if (fields.Element("stream_options") is { } options)
            includeUsage = JsonFields.Of(options, "stream_options").Bool("include_usage") ?? false;
        return (stream, includeUsage);
    }

    /// <summary>Refuses a field this server does not implement when the request sets it.</summary>
    public static void Unsupported(JsonFields fields, string name, string hint)
    {
        if (fields.Element(name) is { } value && !(value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0) && value.ValueKind != JsonValueKind.False)
            throw ApiException.InvalidRequest($"{name} is not supported by this server: {hint}", name);
    }
}
