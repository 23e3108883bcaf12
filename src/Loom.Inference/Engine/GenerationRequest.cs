namespace Loom.Inference.Engine;

/// <summary>One request to an engine: a prompt of token ids and how to sample its continuation.</summary>
public sealed record GenerationRequest
{
    /// <summary>Creates a request.</summary>
    /// <param name="prompt">The prompt's token ids; at least one.</param>
    /// <param name="sampling">How to sample; defaults to <see cref="SamplingOptions"/>' defaults.</param>
    /// <exception cref="ArgumentException">The prompt is empty.</exception>
    public GenerationRequest(IReadOnlyList<int> prompt, SamplingOptions? sampling = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: pass at least one token");
        Prompt = prompt;
        Sampling = sampling ?? new SamplingOptions();
    }

    /// <summary>The prompt's token ids.</summary>
    public IReadOnlyList<int> Prompt { get; }

    /// <summary>How to sample.</summary>
    public SamplingOptions Sampling { get; }

    /// <summary>
    /// The prompt's images, in order, each greyscale H×W pixels row-major in [0, 1] (see <see cref="Models.ImageInputSpec"/>):
    /// image i's soft tokens take the prompt's i-th run of placeholder ids. Empty for text.
    /// </summary>
    public IReadOnlyList<float[]> Images { get; init; } = [];

    /// <summary>
    /// Creates the request's output constraint (structured output, tool calls, a thinking budget), called once when
    /// the request starts generating: at each step only the tokens it allows are sampled. Null: unconstrained.
    /// </summary>
    public Func<Constraints.ITokenConstraint>? Constraint { get; init; }
}

/// <summary>A token's log-probability and, when asked for, the most likely alternatives at its position.</summary>
/// <param name="Token">The token id.</param>
/// <param name="Text">Its text (possibly a partial UTF-8 sequence, decoded alone).</param>
/// <param name="LogProb">Natural log-probability.</param>
/// <param name="Top">The most likely tokens at this position, most likely first.</param>
public sealed record TokenLogProb(int Token, string Text, double LogProb, IReadOnlyList<TokenLogProb> Top);

/// <summary>
/// One step of a request's output: the tokens generated since the last update, their text, and, on
/// the last update, why generation finished.
/// </summary>
/// <param name="Tokens">New token ids (none on a final update that only reports the finish).</param>
/// <param name="Text">The text the new tokens complete (UTF-8 sequences split across tokens are held back until whole; stop sequences are cut).</param>
/// <param name="LogProbs">Per new token, when the request asked for log-probabilities.</param>
/// <param name="FinishReason">Set on the last update only.</param>
/// <param name="PromptTokens">Tokens in the prompt.</param>
/// <param name="CompletionTokens">Tokens generated so far.</param>
public sealed record GenerationUpdate(
    IReadOnlyList<int> Tokens, string Text, IReadOnlyList<TokenLogProb>? LogProbs, FinishReason? FinishReason, int PromptTokens, int CompletionTokens);

/// <summary>A snapshot of an engine's load, for /metrics and dashboards.</summary>
/// <param name="Waiting">Requests queued, not yet running.</param>
/// <param name="Running">Requests being prefilled or decoded.</param>
/// <param name="KvBlocksInUse">KV-cache blocks held by running requests.</param>
/// <param name="KvBlocksTotal">KV-cache blocks in the pool.</param>
/// <param name="PromptTokensTotal">Prompt tokens processed since the engine started.</param>
/// <param name="GeneratedTokensTotal">Tokens generated since the engine started.</param>
/// <param name="PrefixCacheHitTokens">Prompt tokens whose keys and values were reused from the prefix cache.</param>
public sealed record EngineStats(int Waiting, int Running, int KvBlocksInUse, int KvBlocksTotal, long PromptTokensTotal, long GeneratedTokensTotal, long PrefixCacheHitTokens)
{
    /// <summary>Whether the engine decodes speculatively (the two counters below are then reported).</summary>
    public bool Speculative { get; init; }

    /// <summary>Draft tokens proposed by speculative decoding since the engine started.</summary>
    public long SpeculativeProposedTokens { get; init; }

    /// <summary>Draft tokens the target model accepted since the engine started.</summary>
    public long SpeculativeAcceptedTokens { get; init; }
}

/// <summary>The queue is full; the caller should retry later (HTTP 429).</summary>
public sealed class EngineOverloadedException(string message) : Exception(message);

/// <summary>
/// Generates continuations for many concurrent requests. <see cref="GenerateAsync"/> streams each
/// request's updates; cancelling its token stops the request and frees what it holds.
/// </summary>
public interface IGenerationEngine : IDisposable
{
    /// <summary>A short name of the served model, e.g. the checkpoint folder's name.</summary>
    string ModelName { get; }

    /// <summary>The vocabulary prompts are encoded with.</summary>
    Data.IVocabulary Vocabulary { get; }

    /// <summary>
    /// The model's context length: prompt plus generated tokens never exceed it (for an encoder-decoder,
    /// the prompt alone never exceeds it, nor the start token plus generated tokens).
    /// </summary>
    int ContextLength { get; }

    /// <summary>
    /// Whether the model is an encoder-decoder: a prompt goes to its encoder and may hold up to
    /// <see cref="ContextLength"/> tokens, and the reply is a new sequence rather than the prompt's
    /// continuation. A wrapper that does not forward it reads as decoder-only (the stricter prompt limit).
    /// </summary>
    bool IsEncoderDecoder => false;

    /// <summary>The images the model reads (<see cref="GenerationRequest.Images"/>), or null when it takes text only.</summary>
    Models.ImageInputSpec? ImageInput => null;

    /// <summary>The current load.</summary>
    EngineStats Stats { get; }

    /// <summary>Queues a request and streams its updates until it finishes or is cancelled.</summary>
    /// <exception cref="ArgumentException">The prompt does not fit the context (checked before anything is queued).</exception>
    /// <exception cref="EngineOverloadedException">The queue is full.</exception>
    IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);
}
