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
}
