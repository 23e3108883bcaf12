using Loom.Data;
using Loom.Inference.Engine;
using Loom.Inference.Speculative;
using Loom.Models;

namespace Loom.Serving;

/// <summary>Which engine serves requests.</summary>
public enum EngineKind
{
    /// <summary>Continuous batching: many requests share every forward pass.</summary>
    Batching,

    /// <summary>One request at a time (<see cref="SequentialEngine"/>): the baseline.</summary>
    Sequential,
}

/// <summary>How the serving engine is built.</summary>
public sealed record ServingEngineOptions
{
    /// <summary>The engine; continuous batching by default.</summary>
    public EngineKind Kind { get; init; } = EngineKind.Batching;

    /// <summary>The most requests that may wait; more are refused (HTTP 429).</summary>
    public int MaxQueue
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"max queue {value} must be positive");
    } = 256;

    /// <summary>
    /// The batching engine's KV-cache pool, batch and step budget (its <see cref="EngineOptions.MaxQueue"/>
    /// is replaced by <see cref="MaxQueue"/>).
    /// </summary>
    public EngineOptions Batching { get; init; } = new();

    /// <summary>
    /// Decode speculatively with this proposer (a draft model or n-gram lookup); null: token by token. The sequential
    /// engine only: the batching engine does not speculate yet.
    /// </summary>
    public SpeculativeOptions? Speculative { get; init; }

    /// <summary>Parses an engine name as given to <c>--engine</c>: batching or sequential.</summary>
    /// <exception cref="ArgumentException">Another name.</exception>
    public static EngineKind ParseKind(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "batching" => EngineKind.Batching,
        "sequential" => EngineKind.Sequential,
        _ => throw new ArgumentException($"--engine takes batching or sequential, not '{name}'"),
    };
}

/// <summary>The one place where a serving engine is chosen and constructed (the server, <c>loom serve</c> and the load benchmark all come here).</summary>
public static class EngineFactory
{
    /// <summary>Builds the engine <paramref name="options"/> names over a model in eval mode on its device; the caller disposes it.</summary>
    public static IGenerationEngine Create(LanguageModel model, IVocabulary vocabulary, string modelName, ServingEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Speculative is not null && options.Kind != EngineKind.Sequential)
            throw new ArgumentException("speculative decoding runs on the sequential engine only (the batching engine does not speculate yet): use --engine sequential");
        return options.Kind switch
        {
            EngineKind.Sequential => new SequentialEngine(model, vocabulary, modelName, options.MaxQueue, options.Speculative),
            EngineKind.Batching => new ContinuousBatchingEngine(model, vocabulary, modelName, options.Batching with { MaxQueue = options.MaxQueue }),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "unknown engine kind"),
        };
    }
}
