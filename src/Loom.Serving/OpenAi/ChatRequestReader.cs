using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Inference.Chat;
using Loom.Inference.Engine;

namespace Loom.Serving.OpenAi;

/// <summary>Reads a POST /v1/chat/completions body and renders its messages with the chat template.</summary>
internal static class ChatRequestReader
{
    /// <summary>
    /// Messages have a role (system, user, assistant; developer is read as system) and a content
    /// that is a string or an array of text parts. The template's end-of-turn marker is added to the
    /// stop sequences, so the reply ends where the model closes its turn.
    /// </summary>
    public static GenerationCall Read(JsonElement body, IVocabulary vocabulary, int contextLength, IChatTemplate template, bool encoderDecoder = false)
    {
        var fields = JsonFields.Of(body);
        SamplingFields.Unsupported(fields, "tools", "this server has no tool calling; leave tools out");
        SamplingFields.Unsupported(fields, "functions", "this server has no function calling; leave functions out");
        if (fields.Element("response_format") is { } format && JsonFields.Of(format, "response_format").String("type") is { } type && type != "text")
            throw ApiException.InvalidRequest($"response_format type '{type}' is not supported: only text", "response_format");
        int[] prompt = vocabulary.Encode(Render(template, Messages(fields)));
        CompletionRequestReader.CheckPromptLength("messages", prompt.Length, contextLength, encoderDecoder);
        int maxTokens = SamplingFields.MaxTokens(fields, "max_completion_tokens", "max_tokens") ?? contextLength;
        var stop = SamplingFields.Stop(fields, 3, "at most 3 are allowed in chat, because the template's end-of-turn marker is the fourth");
        if (!stop.Contains(template.EndOfTurn)) stop = [.. stop, template.EndOfTurn];
        bool logProbs = fields.Bool("logprobs") ?? false;
        int? top = fields.Integer("top_logprobs", 0, 20);
        if (top is not null && !logProbs) throw ApiException.InvalidRequest("top_logprobs needs logprobs: true", "top_logprobs");
        var sampling = SamplingFields.Read(fields, maxTokens, stop, logProbs ? top ?? 0 : null);
        var (stream, includeUsage) = SamplingFields.Streaming(fields);
        return new GenerationCall(new GenerationRequest(prompt, sampling), stream, includeUsage);
    }

    private static string Render(IChatTemplate template, List<ChatTurn> turns)
    {
        try
        {
            return template.Render(turns);
        }
        catch (ArgumentException e)
        {
            throw ApiException.InvalidRequest(e.Message, "messages");
        }
    }

    private static List<ChatTurn> Messages(JsonFields fields)
    {
        var messages = fields.Element("messages") ?? throw ApiException.InvalidRequest("messages is required", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw fields.WrongType("messages", "an array of messages", messages);
        if (messages.GetArrayLength() == 0) throw ApiException.InvalidRequest("messages is empty: send at least one message", "messages");
        var turns = new List<ChatTurn>();
        int index = 0;
        foreach (var element in messages.EnumerateArray())
        {
            var message = JsonFields.Of(element, $"messages[{index++}]");
            string role = message.String("role") ?? throw ApiException.InvalidRequest($"{message.Param("role")} is required", message.Param("role"));
            if (role == "developer") role = "system"; // OpenAI's newer name for system instructions
            if (!ChatTemplate.Roles.Contains(role))
                throw ApiException.InvalidRequest($"unknown role '{role}' in {message.Param("role")}; use one of {string.Join(", ", ChatTemplate.Roles)} (or developer)", message.Param("role"));
            turns.Add(new ChatTurn(role, Content(message)));
        }
        return turns;
    }

    private static string Content(JsonFields message)
    {
        var content = message.Element("content");
        if (content is null) return "";
        if (content.Value.ValueKind == JsonValueKind.String) return content.Value.GetString()!;
        if (content.Value.ValueKind != JsonValueKind.Array) throw message.WrongType("content", "a string or an array of text parts", content.Value);
        var text = new StringBuilder();
        int index = 0;
        foreach (var element in content.Value.EnumerateArray())
        {
            var part = JsonFields.Of(element, $"{message.Param("content")}[{index++}]");
            string type = part.String("type") ?? "text";
            if (type != "text")
                throw ApiException.InvalidRequest($"content part type '{type}' is not supported: only text", part.Param("type"));
            text.Append(part.String("text") ?? "");
        }
        return text.ToString();
    }
}
