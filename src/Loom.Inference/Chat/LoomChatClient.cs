using System.Runtime.CompilerServices;
using System.Text;
using Loom.Inference.Engine;
using Microsoft.Extensions.AI;

namespace Loom.Inference.Chat;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an <see cref="IGenerationEngine"/>: renders
/// the conversation with an <see cref="IChatTemplate"/>, encodes it with the engine's vocabulary, maps
/// <see cref="ChatOptions"/> to <see cref="SamplingOptions"/> and reports the reply's text, finish reason
/// and token usage. Safe for concurrent requests (the engine queues them).
/// </summary>
/// <remarks>
/// Messages must hold text only, in the system, user and assistant roles; tool messages, tools and
/// JSON response formats are refused with <see cref="NotSupportedException"/>.
/// <see cref="ChatOptions.Instructions"/> become a leading system turn. Cancelling a request's token
/// stops the engine's work on it and frees what it holds; the call (or the streaming enumeration,
/// after the text generated so far) then ends with <see cref="OperationCanceledException"/>.
/// </remarks>
public sealed class LoomChatClient : IChatClient
{
    /// <summary>The provider name reported in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "loom";

    private readonly IGenerationEngine engine;
    private readonly ChatOptions? defaultOptions;
    private readonly ChatClientMetadata metadata;

    /// <summary>Creates a client; it does not own the engine, which the caller disposes.</summary>
    /// <param name="engine">The engine that generates the replies.</param>
    /// <param name="template">
    /// How conversations are rendered; when null, the template the engine's vocabulary brings
    /// (<see cref="ChatTemplate.ForVocabulary"/>: a Hugging Face tokenizer's chat template, else <see cref="ChatTemplate.Default"/>).
    /// </param>
    /// <param name="defaultOptions">Options for what a request's own options leave unset (copied here).</param>
    /// <exception cref="ArgumentException">The default options are invalid (e.g. a negative temperature or another model's id).</exception>
    /// <exception cref="NotSupportedException">The default options ask for tools or JSON output.</exception>
    /// <exception cref="FormatException">The vocabulary's chat template cannot be read (when <paramref name="template"/> is null).</exception>
    public LoomChatClient(IGenerationEngine engine, IChatTemplate? template = null, ChatOptions? defaultOptions = null)
    {
        this.engine = engine ?? throw new ArgumentNullException(nameof(engine));
        Template = template ?? ChatTemplate.ForVocabulary(engine.Vocabulary);
        this.defaultOptions = defaultOptions?.Clone();
        metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: engine.ModelName);
        _ = CreateSamplingOptions(null); // validates the defaults now rather than on the first request
    }

    /// <summary>How conversations are rendered.</summary>
    public IChatTemplate Template { get; }

    /// <summary>
    /// Maps chat options, falling back per option to the client's defaults, to the engine's sampling
    /// options: temperature, top-p, top-k, max output tokens, seed, presence and frequency penalties, and
    /// the stop sequences plus the template's <see cref="IChatTemplate.EndOfTurn"/>. Generation also stops at EOS.
    /// </summary>
    /// <exception cref="ArgumentException">An option is out of range, there are more than 3 stop sequences besides the end of turn, or the model id names another model.</exception>
    /// <exception cref="NotSupportedException">The options ask for tools or JSON output.</exception>
    public SamplingOptions CreateSamplingOptions(ChatOptions? options)
    {
        string? modelId = options?.ModelId ?? defaultOptions?.ModelId;
        if (modelId is not null && modelId != engine.ModelName)
            throw new ArgumentException($"model '{modelId}' is not served here; this client serves '{engine.ModelName}': leave ModelId unset or use that name");
        if ((options?.Tools ?? defaultOptions?.Tools) is { Count: > 0 })
            throw new NotSupportedException("tools are not supported: the chat template has no tool calls; send the request without tools");
        if ((options?.ResponseFormat ?? defaultOptions?.ResponseFormat) is ChatResponseFormatJson)
            throw new NotSupportedException("JSON response formats are not supported: Loom cannot constrain its output; ask for text");

        var stops = new List<string>();
        foreach (string stop in options?.StopSequences ?? defaultOptions?.StopSequences ?? [])
            if (!stops.Contains(stop)) stops.Add(stop);
        if (!stops.Contains(Template.EndOfTurn))
        {
            if (stops.Count > 3)
                throw new ArgumentException($"{stops.Count} stop sequences were given; at most 3 are allowed besides the template's end of turn '{Template.EndOfTurn}'");
            stops.Add(Template.EndOfTurn);
        }

        var defaults = new SamplingOptions();
        return new SamplingOptions
        {
            Temperature = options?.Temperature ?? defaultOptions?.Temperature ?? defaults.Temperature,
            TopP = options?.TopP ?? defaultOptions?.TopP ?? defaults.TopP,
            TopK = options?.TopK ?? defaultOptions?.TopK ?? defaults.TopK,
            MaxTokens = options?.MaxOutputTokens ?? defaultOptions?.MaxOutputTokens ?? defaults.MaxTokens,
            Seed = options?.Seed ?? defaultOptions?.Seed,
            PresencePenalty = options?.PresencePenalty ?? defaultOptions?.PresencePenalty ?? defaults.PresencePenalty,
            FrequencyPenalty = options?.FrequencyPenalty ?? defaultOptions?.FrequencyPenalty ?? defaults.FrequencyPenalty,
            Stop = stops,
            StopAtEos = true,
        };
    }

    /// <summary>
    /// The prompt text for a conversation: the options' (or defaults') instructions as a leading system
    /// turn, then the messages, rendered with <see cref="Template"/>.
    /// </summary>
    /// <exception cref="ArgumentException">There are no messages, a message has an unknown role, or the template refuses the conversation.</exception>
    /// <exception cref="NotSupportedException">A message is a tool message or holds content other than text.</exception>
    public string RenderPrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var turns = new List<ChatTurn>();
        string? instructions = options?.Instructions ?? defaultOptions?.Instructions;
        if (!string.IsNullOrEmpty(instructions)) turns.Add(new ChatTurn(ChatRole.System.Value, instructions));
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            if (message.Role == ChatRole.Tool)
                throw new NotSupportedException("tool messages are not supported: the chat template has no tool role; send system, user and assistant messages");
            var text = new StringBuilder();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case UsageContent: break; // metadata of an earlier streamed reply, not part of the conversation
                    default:
                        throw new NotSupportedException($"{content.GetType().Name} in a {message.Role} message is not supported: Loom's models read text only");
                }
            }
            turns.Add(new ChatTurn(message.Role.Value, text.ToString()));
        }
        return Template.Render(turns);
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentException">See <see cref="CreateSamplingOptions"/> and <see cref="RenderPrompt"/>; also a prompt longer than the model's context.</exception>
    /// <exception cref="NotSupportedException">Tools, tool messages, non-text content or JSON output were asked for.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = CreateRequest(messages, options);
        string responseId = NewResponseId();
        var text = new StringBuilder();
        GenerationUpdate? last = null;
        await foreach (var update in Generate(request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            last = update;
        }
        var final = last!; // Generate ends with a finished update or throws
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()) { MessageId = responseId })
        {
            ResponseId = responseId,
            ModelId = engine.ModelName,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(final.FinishReason!.Value),
            Usage = Usage(final),
        };
    }

    /// <inheritdoc />
    /// <remarks>
    /// Every update is an assistant text delta of one message; the last carries the finish reason and a
    /// <see cref="UsageContent"/> (which <see cref="ChatResponseExtensions.ToChatResponseAsync"/> turns into
    /// <see cref="ChatResponse.Usage"/>). The engine's own update is each one's <see cref="ChatResponseUpdate.RawRepresentation"/>.
    /// Invalid requests throw here, before enumeration.
    /// </remarks>
    /// <exception cref="ArgumentException">See <see cref="CreateSamplingOptions"/> and <see cref="RenderPrompt"/>.</exception>
    /// <exception cref="NotSupportedException">Tools, tool messages, non-text content or JSON output were asked for.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        Stream(CreateRequest(messages, options), cancellationToken);

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(engine)) return engine;
        return null;
    }

    /// <summary>Does nothing: the engine belongs to the caller.</summary>
    public void Dispose()
    {
    }

    private GenerationRequest CreateRequest(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var sampling = CreateSamplingOptions(options);
        return new GenerationRequest(engine.Vocabulary.Encode(RenderPrompt(messages, options)), sampling);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string responseId = NewResponseId();
        var createdAt = DateTimeOffset.UtcNow;
        await foreach (var update in Generate(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.Text.Length == 0 && update.FinishReason is null) continue; // text held back (a partial character or a possible stop sequence)
            var contents = new List<AIContent>();
            if (update.Text.Length > 0) contents.Add(new TextContent(update.Text));
            if (update.FinishReason is not null) contents.Add(new UsageContent(Usage(update)));
            yield return new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = engine.ModelName,
                CreatedAt = createdAt,
                FinishReason = update.FinishReason is { } reason ? MapFinishReason(reason) : null,
                RawRepresentation = update,
            };
        }
    }

    /// <summary>The engine's updates, ending with a finished one; a cancelled request throws instead.</summary>
    private async IAsyncEnumerable<GenerationUpdate> Generate(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var update in engine.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.FinishReason == FinishReason.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new OperationCanceledException("the engine cancelled the request");
            }
            yield return update;
            if (update.FinishReason is not null) yield break;
        }
        cancellationToken.ThrowIfCancellationRequested();
        throw new InvalidOperationException($"engine '{engine.ModelName}' ended a request without a finish reason");
    }

    private static ChatFinishReason MapFinishReason(FinishReason reason) => reason switch
    {
        FinishReason.Stop or FinishReason.StopSequence => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, "a cancelled request has no chat finish reason"),
    };

    private static UsageDetails Usage(GenerationUpdate update) => new()
    {
        InputTokenCount = update.PromptTokens,
        OutputTokenCount = update.CompletionTokens,
        TotalTokenCount = update.PromptTokens + update.CompletionTokens,
    };

    private static string NewResponseId() => $"loom-{Guid.NewGuid():N}";
}
