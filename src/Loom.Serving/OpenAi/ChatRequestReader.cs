using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Data.ImageText;
using Loom.Inference;
using Loom.Inference.Chat;
using Loom.Inference.Constraints;
using Loom.Inference.Engine;

namespace Loom.Serving.OpenAi;

/// <summary>Reads a POST /v1/chat/completions body and renders its messages with the chat template.</summary>
internal static class ChatRequestReader
{
    /// <summary>
    /// Messages have a role (system, user, assistant; developer is read as system) and a content
    /// that is a string or an array of text parts and, for a model that reads images (<paramref name="images"/>),
    /// <c>image_url</c> parts holding PNG or JPEG <c>data:</c> URLs, each read where it stands among the text. The
    /// template's end-of-turn marker is added to the stop sequences, so the reply ends where the model closes its turn.
    /// Tool messages (role tool, with <c>tool_call_id</c>) and assistant <c>tool_calls</c> are rendered as the template's tool
    /// turns and calls; <c>tools</c> are listed in the prompt (unless <c>tool_choice</c> is none) and <c>tool_choice</c> constrains
    /// the reply through <paramref name="constraints"/> (see <see cref="ToolFields"/>); <c>reasoning_effort</c> or
    /// <c>thinking_budget</c> opens a thinking segment whose budget is enforced the same way.
    /// </summary>
    /// <remarks>
    /// <c>response_format</c> <c>json_object</c> or <c>json_schema</c> constrains the reply (with
    /// <paramref name="constraints"/>; without it only <c>text</c> is accepted): a schema Loom cannot enforce is a 400
    /// that names the field, e.g. <c>response_format.json_schema.schema.properties.age.minimum</c>.
    /// </remarks>
    public static GenerationCall Read(JsonElement body, IVocabulary vocabulary, int contextLength, IChatTemplate template, bool encoderDecoder = false,
        Models.ImageInputSpec? images = null, ChatConstraintFactory? constraints = null)
    {
        var fields = JsonFields.Of(body);
        SamplingFields.Unsupported(fields, "functions", "the legacy functions field is not supported; send tools instead");
        var grammar = ResponseFormat(fields, constraints is not null);
        var tools = ToolFields.Policy(fields);
        int? thinkingBudget = ToolFields.ThinkingBudget(fields);
        var promptOptions = new ChatPromptOptions { Tools = tools is { Mode: not ToolChoiceMode.None } ? tools.Tools : [], Thinking = thinkingBudget is not null };
        if (grammar is not null && (promptOptions.Tools.Count > 0 || promptOptions.Thinking))
            throw ApiException.InvalidRequest("a JSON response_format cannot be combined with tools or thinking: send one of them (or tool_choice \"none\")", "response_format");
        var pictures = new List<float[]>();
        string rendered = Render(template, Messages(fields, images, pictures), promptOptions);
        int[] prompt = pictures.Count == 0 ? vocabulary.Encode(rendered) : EncodeWithImages(vocabulary, rendered, images!, pictures.Count);
        CompletionRequestReader.CheckPromptLength("messages", prompt.Length, contextLength, encoderDecoder);
        int maxTokens = SamplingFields.MaxTokens(fields, "max_completion_tokens", "max_tokens") ?? contextLength;
        var stop = SamplingFields.Stop(fields, 3, "at most 3 are allowed in chat, because the template's end-of-turn marker is the fourth");
        // A constrained reply ends where its grammar does (EOS is forced there); the end-of-turn text could occur inside a JSON string.
        if (grammar is null && !stop.Contains(template.EndOfTurn)) stop = [.. stop, template.EndOfTurn];
        bool logProbs = fields.Bool("logprobs") ?? false;
        int? top = fields.Integer("top_logprobs", 0, 20);
        if (top is not null && !logProbs) throw ApiException.InvalidRequest("top_logprobs needs logprobs: true", "top_logprobs");
        var sampling = SamplingFields.Read(fields, maxTokens, stop, logProbs ? top ?? 0 : null);
        var (stream, includeUsage) = SamplingFields.Streaming(fields);
        ChatReplyShape? shape = promptOptions.Tools.Count > 0 || promptOptions.Thinking ? new ChatReplyShape(promptOptions.Thinking, promptOptions.Tools.Count > 0) : null;
        Func<ITokenConstraint>? constraint = null;
        if (shape is not null)
        {
            constraints ??= new ChatConstraintFactory(new TokenConstraintFactory(vocabulary));
            constraint = constraints.ForReply(tools, thinkingBudget, made => shape.Thinking = made);
        }
        else if (grammar is not null)
        {
            // The constraint steers the reply to end (with EOS) within the tokens the engine will generate.
            int budget = Math.Min(maxTokens, encoderDecoder ? contextLength - 1 : contextLength - prompt.Length);
            constraint = () => constraints!.Grammars.Create(grammar, Math.Max(1, budget));
        }
        return new GenerationCall(new GenerationRequest(prompt, sampling) { Images = pictures, Constraint = constraint }, stream, includeUsage) { Reply = shape };
    }

    /// <summary>The grammar <c>response_format</c> asks for: null for text (or none), any JSON object, or a JSON schema's values.</summary>
    private static Grammar? ResponseFormat(JsonFields fields, bool constrainable)
    {
        const string Param = "response_format";
        if (fields.Element(Param) is not { } format) return null;
        if (format.ValueKind != JsonValueKind.Object) throw fields.WrongType(Param, "an object such as {\"type\":\"json_object\"}", format);
        var formatFields = JsonFields.Of(format, Param);
        string type = formatFields.String("type") ?? throw ApiException.InvalidRequest($"{Param}.type is required: text, json_object or json_schema", $"{Param}.type");
        if (type == "text") return null;
        if (type is not ("json_object" or "json_schema"))
            throw ApiException.InvalidRequest($"{Param}.type '{type}' is not supported: use text, json_object or json_schema", $"{Param}.type");
        if (!constrainable) throw ApiException.InvalidRequest($"{Param} type '{type}' is not supported by this server: only text", Param);
        if (type == "json_object") return Grammar.JsonObject();

        const string SchemaParam = Param + ".json_schema";
        var spec = formatFields.Element("json_schema") ?? throw ApiException.InvalidRequest($"{SchemaParam} is required when {Param}.type is json_schema", SchemaParam);
        if (spec.ValueKind != JsonValueKind.Object) throw formatFields.WrongType("json_schema", "an object with name and schema", spec);
        var specFields = JsonFields.Of(spec, SchemaParam);
        if (specFields.String("name") is not { Length: > 0 }) throw ApiException.InvalidRequest($"{SchemaParam}.name is required", $"{SchemaParam}.name");
        _ = specFields.Bool("strict"); // checks its type; Loom always enforces the schema strictly
        var schema = specFields.Element("schema") ?? throw ApiException.InvalidRequest($"{SchemaParam}.schema is required", $"{SchemaParam}.schema");
        try
        {
            return Grammar.JsonSchema(schema);
        }
        catch (SchemaException e)
        {
            string param = SchemaParam + ".schema" + e.Path[1..];
            throw ApiException.InvalidRequest($"{param}{e.Message[e.Path.Length..]}", param);
        }
    }

    /// <summary>The rendered conversation with each image's marker as the model's run of placeholder ids.</summary>
    private static int[] EncodeWithImages(IVocabulary vocabulary, string rendered, Models.ImageInputSpec spec, int images)
    {
        var (tokens, markers) = ImagePrompts.Encode(vocabulary, rendered, spec.PlaceholderId, spec.TokensPerImage);
        if (markers != images)
            throw ApiException.InvalidRequest($"the messages hold {markers} {ImagePrompts.Marker} markers but {images} images: leave {ImagePrompts.Marker} out of text parts (each image_url part stands for its image)", "messages");
        return tokens;
    }

    private static string Render(IChatTemplate template, List<ChatTurn> turns, ChatPromptOptions options)
    {
        try
        {
            return template.Render(turns, options);
        }
        catch (ArgumentException e)
        {
            throw ApiException.InvalidRequest(e.Message, "messages");
        }
    }

    private static List<ChatTurn> Messages(JsonFields fields, Models.ImageInputSpec? images, List<float[]> pictures)
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
            var turn = new ChatTurn(role, Content(message, images, pictures));
            if (role == "tool")
            {
                string id = message.String("tool_call_id") is { Length: > 0 } callId ? callId
                    : throw ApiException.InvalidRequest($"{message.Param("tool_call_id")} is required in a tool message: the id of the call whose result it holds", message.Param("tool_call_id"));
                turn = turn with { ToolCallId = id, Name = message.String("name") };
            }
            else if (message.Element("tool_calls") is { } calls)
            {
                if (role != "assistant")
                    throw ApiException.InvalidRequest($"{message.Param("tool_calls")} is only allowed in assistant messages, not {role}", message.Param("tool_calls"));
                turn = turn with { ToolCalls = ToolFields.Calls(message, calls) };
            }
            turns.Add(turn);
        }
        return turns;
    }

    private static string Content(JsonFields message, Models.ImageInputSpec? images, List<float[]> pictures)
    {
        var content = message.Element("content");
        if (content is null) return "";
        if (content.Value.ValueKind == JsonValueKind.String) return content.Value.GetString()!;
        if (content.Value.ValueKind != JsonValueKind.Array) throw message.WrongType("content", "a string or an array of text and image_url parts", content.Value);
        var text = new StringBuilder();
        int index = 0;
        foreach (var element in content.Value.EnumerateArray())
        {
            var part = JsonFields.Of(element, $"{message.Param("content")}[{index++}]");
            string type = part.String("type") ?? "text";
            if (type == "image_url")
            {
                pictures.Add(Image(part, images));
                text.Append(ImagePrompts.Marker);
                continue;
            }
            if (type != "text")
                throw ApiException.InvalidRequest($"content part type '{type}' is not supported: only text and image_url", part.Param("type"));
            text.Append(part.String("text") ?? "");
        }
        return text.ToString();
    }

    /// <summary>An <c>image_url</c> part's image: a base64 PNG or JPEG <c>data:</c> URL, decoded to the model's greyscale size.</summary>
    private static float[] Image(JsonFields part, Models.ImageInputSpec? images)
    {
        string param = part.Param("image_url");
        if (images is null) throw ApiException.InvalidRequest("this model reads text only: it cannot take image_url parts (serve a vision_language checkpoint)", part.Param("type"));
        var imageUrl = part.Element("image_url") ?? throw ApiException.InvalidRequest($"{param} is required in an image_url part", param);
        string? url = imageUrl.ValueKind == JsonValueKind.Object ? JsonFields.Of(imageUrl, param).String("url") : null;
        if (url is null) throw ApiException.InvalidRequest($"{param}.url is required: a data:image/png;base64,... or data:image/jpeg;base64,... URL", param);
        const string Base64 = ";base64,";
        int comma = url.IndexOf(Base64, StringComparison.Ordinal);
        if (!url.StartsWith("data:", StringComparison.OrdinalIgnoreCase) || comma < 0)
            throw ApiException.InvalidRequest($"unsupported image URL in {param}.url: only base64 data: URLs of PNG or JPEG images are accepted (this server fetches nothing)", param);
        string mediaType = url[5..comma].ToLowerInvariant();
        if (mediaType is not ("image/png" or "image/jpeg" or "image/jpg"))
            throw ApiException.InvalidRequest($"unsupported image format '{mediaType}' in {param}.url: send image/png or image/jpeg", param);
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(url[(comma + Base64.Length)..]);
        }
        catch (FormatException)
        {
            throw ApiException.InvalidRequest($"malformed image in {param}.url: its data is not valid base64", param);
        }
        try
        {
            return GreyscaleImages.Decode(bytes, images.ImageSize);
        }
        catch (ImageInputException e)
        {
            throw ApiException.InvalidRequest($"{(e.Message.StartsWith("unsupported", StringComparison.Ordinal) ? "" : "malformed image: ")}{e.Message} ({param}.url)", param);
        }
    }
}
