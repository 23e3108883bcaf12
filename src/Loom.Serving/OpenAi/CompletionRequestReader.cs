using System.Text.Json;
using Loom.Data;
using Loom.Inference.Engine;

namespace Loom.Serving.OpenAi;

/// <summary>Reads a POST /v1/completions body.</summary>
internal static class CompletionRequestReader
{
    /// <summary>OpenAI's default max_tokens for completions.</summary>
    public const int DefaultMaxTokens = 16;

    /// <summary>
    /// The prompt is a string, or token ids (an array of integers); an array holding one of either is
    /// accepted too, several prompts are not. Refuses a prompt that leaves no room in the context (an
    /// encoder-decoder's: one longer than the encoder takes).
    /// </summary>
    public static GenerationCall Read(JsonElement body, IVocabulary vocabulary, int contextLength, bool encoderDecoder = false)
    {
        var fields = JsonFields.Of(body);
        SamplingFields.Unsupported(fields, "echo", "leave it out or set it to false");
        SamplingFields.Unsupported(fields, "suffix", "leave it out");
        var (prompt, promptText) = Prompt(fields, vocabulary);
        CheckPromptLength("prompt", prompt.Count, contextLength, encoderDecoder);
        int maxTokens = SamplingFields.MaxTokens(fields, "max_tokens") ?? DefaultMaxTokens;
        var stop = SamplingFields.Stop(fields, 4, "at most 4 are allowed");
        int? logProbs = fields.Integer("logprobs", 0, 20, "use an integer from 0 to 20 (alternatives per token), or leave it out");
        var sampling = SamplingFields.Read(fields, maxTokens, stop, logProbs);
        var (stream, includeUsage) = SamplingFields.Streaming(fields);
        return new GenerationCall(new GenerationRequest(prompt, sampling), stream, includeUsage, promptText.Length);
    }

    /// <summary>
    /// Refuses a prompt the engine would refuse: a decoder-only model's prompt must leave room for a reply in
    /// the context; an encoder-decoder's may fill its encoder (the reply is decoded in a context of its own).
    /// </summary>
    internal static void CheckPromptLength(string param, int promptTokens, int contextLength, bool encoderDecoder)
    {
        if (encoderDecoder && promptTokens > contextLength) throw ApiException.EncoderInputTooLong(param, promptTokens, contextLength);
        if (!encoderDecoder && promptTokens >= contextLength) throw ApiException.ContextLengthExceeded(param, promptTokens, contextLength);
    }

    private static (IReadOnlyList<int> Ids, string Text) Prompt(JsonFields fields, IVocabulary vocabulary)
    {
        var value = fields.Element("prompt") ?? throw ApiException.InvalidRequest("prompt is required", "prompt");
        if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 1 && value[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
            value = value[0];
        if (value.ValueKind == JsonValueKind.String)
        {
            string text = value.GetString()!;
            int[] ids = vocabulary.Encode(text);
            if (ids.Length == 0) throw ApiException.InvalidRequest("prompt is empty: send at least one character", "prompt");
            return (ids, text);
        }
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number))
        {
            var ids = new List<int>();
            foreach (var element in value.EnumerateArray())
            {
                if (!element.TryGetInt32(out int id) || id < 0 || id >= vocabulary.Size)
                    throw ApiException.InvalidRequest($"prompt token {element.GetRawText()} is not in the vocabulary (ids 0 to {vocabulary.Size - 1})", "prompt");
                ids.Add(id);
            }
            if (ids.Count == 0) throw ApiException.InvalidRequest("prompt is empty: send at least one token", "prompt");
            return (ids, vocabulary.Decode(ids.ToArray()));
        }
        if (value.ValueKind == JsonValueKind.Array)
            throw ApiException.InvalidRequest("prompt holds several prompts; send one prompt (a string or an array of token ids) per request", "prompt");
        throw fields.WrongType("prompt", "a string or an array of token ids", value);
    }
}
