using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Inference;
using Loom.Inference.Engine;

namespace Loom.Serving.OpenAi;

// The response objects of OpenAI's API, as records serialized with snake_case names. Fields OpenAI
// always writes, even as null (finish_reason, logprobs), are marked Never-ignore; the rest are left
// out when null.

internal sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens)
{
    /// <summary>The thinking tokens among the completion's, for a reply that thought.</summary>
    public CompletionTokensDetails? CompletionTokensDetails { get; init; }

    public static Usage Of(int promptTokens, int completionTokens, int? reasoningTokens = null) =>
        new(promptTokens, completionTokens, promptTokens + completionTokens)
        {
            CompletionTokensDetails = reasoningTokens is int r ? new CompletionTokensDetails(r) : null,
        };
}

internal sealed record CompletionTokensDetails(int ReasoningTokens);

internal sealed record Completion(string Id, string Object, long Created, string Model, IReadOnlyList<CompletionChoice> Choices, Usage? Usage);

internal sealed record CompletionChoice(
    string Text,
    int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] CompletionLogProbs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

internal sealed record CompletionLogProbs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<double> TokenLogprobs,
    IReadOnlyList<IReadOnlyDictionary<string, double>> TopLogprobs,
    IReadOnlyList<int> TextOffset);

internal sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage? Usage);

internal sealed record ChatChoice(
    int Index,
    ChatMessage? Message,
    ChatMessage? Delta,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogProbs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

/// <summary>A message (whole replies) or a delta (stream chunks: the role in the first, then content, thinking or tool-call pieces).</summary>
internal sealed record ChatMessage(string? Role, string? Content)
{
    /// <summary>The thinking text (DeepSeek's and vLLM's <c>reasoning_content</c>), apart from the content.</summary>
    public string? ReasoningContent { get; init; }

    public IReadOnlyList<ChatToolCallJson>? ToolCalls { get; init; }
}

/// <summary>A tool call, or in a stream a piece of one (index always; id, type and name in its first piece; then arguments pieces).</summary>
internal sealed record ChatToolCallJson(int? Index, string? Id, string? Type, ChatFunctionJson Function);

internal sealed record ChatFunctionJson(string? Name, string? Arguments);

internal sealed record ChatLogProbs(IReadOnlyList<ChatTokenLogProb> Content);

internal sealed record ChatTokenLogProb(string Token, double Logprob, IReadOnlyList<byte> Bytes, IReadOnlyList<ChatTopLogProb> TopLogprobs);

internal sealed record ChatTopLogProb(string Token, double Logprob, IReadOnlyList<byte> Bytes);

internal sealed record ModelList(string Object, IReadOnlyList<ModelCard> Data);

internal sealed record ModelCard(string Id, string Object, long Created, string OwnedBy);

/// <summary>Serialization settings and conversions shared by the endpoints.</summary>
internal static class OpenAiJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Bytes as a number array (OpenAI's "bytes"), not base64.
        Converters = { new ByteListConverter() },
    };

    /// <summary>OpenAI's finish_reason: stop (EOS or a stop sequence) or length; null while running or when cancelled.</summary>
    public static string? FinishReason(FinishReason? reason) => reason switch
    {
        Inference.FinishReason.Stop or Inference.FinishReason.StopSequence => "stop",
        Inference.FinishReason.Length => "length",
        _ => null,
    };

    public static ChatTokenLogProb ChatLogProb(TokenLogProb p) =>
        new(p.Text, p.LogProb, Encoding.UTF8.GetBytes(p.Text),
            [.. p.Top.Select(t => new ChatTopLogProb(t.Text, t.LogProb, Encoding.UTF8.GetBytes(t.Text)))]);

    /// <summary>A completions logprobs block for <paramref name="tokens"/>, whose text starts at <paramref name="offset"/>.</summary>
    public static CompletionLogProbs CompletionLogProbs(IReadOnlyList<TokenLogProb> tokens, int offset)
    {
        var offsets = new List<int>();
        foreach (var token in tokens)
        {
            offsets.Add(offset);
            offset += token.Text.Length;
        }
        return new CompletionLogProbs(
            [.. tokens.Select(t => t.Text)],
            [.. tokens.Select(t => t.LogProb)],
            [.. tokens.Select(t => (IReadOnlyDictionary<string, double>)t.Top.DistinctBy(a => a.Text).ToDictionary(a => a.Text, a => a.LogProb))],
            offsets);
    }

    private sealed class ByteListConverter : JsonConverter<IReadOnlyList<byte>>
    {
        public override IReadOnlyList<byte> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            throw new NotSupportedException("responses are only written");

        public override void Write(Utf8JsonWriter writer, IReadOnlyList<byte> value, JsonSerializerOptions options)
        {
            writer.WriteStartArray();
            foreach (byte b in value) writer.WriteNumberValue(b);
            writer.WriteEndArray();
        }
    }
}
