using System.Text;
using Loom.Inference;
using Loom.Inference.Engine;

namespace Loom.Serving.Metrics;

/// <summary>
/// What GET /metrics reports: the engine's load and token counters, and what the server measures per
/// request: time to first token, inter-token latency, tokens per second and how requests finished.
/// </summary>
internal sealed class ServerMetrics(TimeProvider time)
{
    /// <summary>Seconds over which <c>loom_generation_tokens_per_second</c> is averaged.</summary>
    public const int RateWindowSeconds = 5;

    private static readonly double[] TimeToFirstTokenBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    private static readonly double[] InterTokenBounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
    private static readonly string[] Outcomes = ["stop", "length", "cancelled", "error"];

    private readonly long[] finished = new long[Outcomes.Length];

    public TimeProvider Time => time;

    public PrometheusHistogram TimeToFirstToken { get; } = new(TimeToFirstTokenBounds);

    public PrometheusHistogram InterTokenLatency { get; } = new(InterTokenBounds);

    public ThroughputWindow GeneratedTokens { get; } = new(time, RateWindowSeconds);

    /// <summary>Counts a finished request: stop, length, cancelled (the client went away) or error.</summary>
    public void Finished(string outcome) => Interlocked.Increment(ref finished[Array.IndexOf(Outcomes, outcome)]);

    /// <summary>The outcome <see cref="Finished"/> counts for an engine's finish reason.</summary>
    public static string Outcome(FinishReason reason) => reason switch
    {
        FinishReason.Stop or FinishReason.StopSequence => "stop",
        FinishReason.Length => "length",
        _ => "cancelled",
    };

    /// <summary>The exposition text.</summary>
    public string Render(EngineStats stats)
    {
        ArgumentNullException.ThrowIfNull(stats);
        var text = new StringBuilder();
        PrometheusText.Write(text, "loom_requests_waiting", "gauge", "Requests queued in the engine, not yet running.", stats.Waiting);
        PrometheusText.Write(text, "loom_requests_running", "gauge", "Requests being prefilled or decoded.", stats.Running);
        PrometheusText.Write(text, "loom_kv_blocks_in_use", "gauge", "KV-cache blocks held by running requests.", stats.KvBlocksInUse);
        PrometheusText.Write(text, "loom_kv_blocks_total", "gauge", "KV-cache blocks in the pool.", stats.KvBlocksTotal);
        PrometheusText.Write(text, "loom_prompt_tokens_total", "counter", "Prompt tokens processed since the engine started.", stats.PromptTokensTotal);
        PrometheusText.Write(text, "loom_generation_tokens_total", "counter", "Tokens generated since the engine started.", stats.GeneratedTokensTotal);
        PrometheusText.Write(text, "loom_prefix_cache_hit_tokens_total", "counter", "Prompt tokens whose keys and values came from the prefix cache.", stats.PrefixCacheHitTokens);
        if (stats.Speculative)
        {
            long proposed = stats.SpeculativeProposedTokens, accepted = stats.SpeculativeAcceptedTokens;
            PrometheusText.Write(text, "loom_speculative_proposed_tokens_total", "counter", "Draft tokens proposed by speculative decoding since the engine started.", proposed);
            PrometheusText.Write(text, "loom_speculative_accepted_tokens_total", "counter", "Draft tokens the target model accepted since the engine started.", accepted);
            PrometheusText.Write(text, "loom_speculative_acceptance_rate", "gauge", "Accepted over proposed draft tokens since the engine started (0 before any).",
                proposed == 0 ? 0 : (double)accepted / proposed);
        }
        PrometheusText.Write(text, "loom_generation_tokens_per_second", "gauge",
            $"Tokens sent to clients per second over the last {RateWindowSeconds} whole seconds.", GeneratedTokens.PerSecond());
        text.Append("# HELP loom_requests_finished_total Generation requests finished, by outcome (cancelled: the client went away).\n");
        text.Append("# TYPE loom_requests_finished_total counter\n");
        for (int i = 0; i < Outcomes.Length; i++)
            text.Append("loom_requests_finished_total{outcome=\"").Append(Outcomes[i]).Append("\"} ").Append(Interlocked.Read(ref finished[i])).Append('\n');
        TimeToFirstToken.Write(text, "loom_time_to_first_token_seconds", "Seconds from a request's arrival to its first generated token, measured by the server.");
        InterTokenLatency.Write(text, "loom_inter_token_latency_seconds", "Seconds between a request's consecutive generated tokens, measured by the server.");
        return text.ToString();
    }
}
