namespace Loom.Inference;

/// <summary>How the next token is chosen and when generation stops.</summary>
public sealed record SamplingOptions
{
    private readonly double temperature = 1.0;
    private readonly int topK;
    private readonly double topP = 1.0;
    private readonly int maxTokens = 256;

    /// <summary>Softmax temperature; 0 = greedy (argmax).</summary>
    public double Temperature
    {
        get => temperature;
        init => temperature = value >= 0 && double.IsFinite(value) ? value : throw new ArgumentException($"temperature = {value} must be 0 (greedy) or positive");
    }

    /// <summary>Keep only the k most likely tokens; 0 = no limit.</summary>
    public int TopK
    {
        get => topK;
        init => topK = value >= 0 ? value : throw new ArgumentException($"top_k = {value} must be 0 (off) or positive");
    }

    /// <summary>Keep the smallest set of tokens whose probability reaches p (nucleus sampling); 1 = off.</summary>
    public double TopP
    {
        get => topP;
        init => topP = value > 0 && value <= 1 ? value : throw new ArgumentException($"top_p = {value} must be in (0, 1]");
    }

    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens
    {
        get => maxTokens;
        init => maxTokens = value > 0 ? value : throw new ArgumentException($"max_tokens = {value} must be positive");
    }

    /// <summary>Seed of the sampling generator; null = nondeterministic.</summary>
    public long? Seed { get; init; }

    /// <summary>Stop when the model emits the end-of-sequence token.</summary>
    public bool StopAtEos { get; init; } = true;

    /// <summary>
    /// OpenAI's presence penalty, in [-2, 2]: subtracted once from the logit of every token already
    /// generated (prompt tokens do not count), before temperature; 0 turns it off.
    /// </summary>
    public double PresencePenalty
    {
        get;
        init => field = value is >= -2 and <= 2 ? value : throw new ArgumentException($"presence_penalty = {value} must be in [-2, 2]");
    }

    /// <summary>
    /// OpenAI's frequency penalty, in [-2, 2]: subtracted from a token's logit once per time it was
    /// already generated; 0 turns it off.
    /// </summary>
    public double FrequencyPenalty
    {
        get;
        init => field = value is >= -2 and <= 2 ? value : throw new ArgumentException($"frequency_penalty = {value} must be in [-2, 2]");
    }

    /// <summary>Up to 4 non-empty strings; generation stops before the first occurrence of any of them in the output text.</summary>
    public IReadOnlyList<string> Stop
    {
        get;
        init => field = value is null ? []
            : value.Count > 4 ? throw new ArgumentException($"stop has {value.Count} sequences; at most 4 are allowed")
            : value.Any(string.IsNullOrEmpty) ? throw new ArgumentException("stop sequences must not be empty")
            : value;
    } = [];

    /// <summary>
    /// Whether to report each generated token's log-probability (under the distribution it was drawn
    /// from, before temperature), with this many most likely alternatives (0 to 20); null for none.
    /// </summary>
    public int? LogProbs
    {
        get;
        init => field = value is null or (>= 0 and <= 20) ? value : throw new ArgumentException($"logprobs = {value} must be between 0 and 20");
    }
}
