using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Serving.Metrics;

namespace Loom.Serving.Tests.Metrics;

public class ServerMetricsTests
{
    [Fact]
    public void RenderReportsTheEngineStatsAndTheOutcomes()
    {
        var metrics = new ServerMetrics(new ManualTime());
        metrics.Finished(ServerMetrics.Outcome(FinishReason.StopSequence));
        metrics.Finished(ServerMetrics.Outcome(FinishReason.Length));
        metrics.Finished("cancelled");
        string text = metrics.Render(new EngineStats(Waiting: 3, Running: 2, KvBlocksInUse: 7, KvBlocksTotal: 64, PromptTokensTotal: 100, GeneratedTokensTotal: 250, PrefixCacheHitTokens: 16));
        var lines = text.Split('\n');
        foreach (string expected in new[]
                 {
                     "loom_requests_waiting 3", "loom_requests_running 2", "loom_kv_blocks_in_use 7", "loom_kv_blocks_total 64",
                     "loom_prompt_tokens_total 100", "loom_generation_tokens_total 250", "loom_prefix_cache_hit_tokens_total 16",
                     "loom_requests_finished_total{outcome=\"stop\"} 1", "loom_requests_finished_total{outcome=\"length\"} 1",
                     "loom_requests_finished_total{outcome=\"cancelled\"} 1", "loom_requests_finished_total{outcome=\"error\"} 0",
                     "loom_time_to_first_token_seconds_count 0",
                 })
            Assert.Contains(expected, lines);
    }
}
