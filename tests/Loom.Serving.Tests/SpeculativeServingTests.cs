using System.Net.Http.Json;
using Loom.Data;
using Loom.Inference.Engine;
using Loom.Inference.Speculative;
using Loom.Models;
using Loom.Serving.Metrics;

namespace Loom.Serving.Tests;

/// <summary>Speculative serving: the factory's rule and the acceptance counters on /metrics.</summary>
public class SpeculativeServingTests
{
    private static DecoderLm Model() => Seeded.Model(new DecoderLmOptions
    {
        VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
    }, 17);

    [Fact]
    public void RenderReportsTheAcceptanceCountersOnlyForASpeculativeEngine()
    {
        var metrics = new ServerMetrics(new ManualTime());
        var stats = new EngineStats(0, 0, 0, 0, 10, 20, 0);
        Assert.DoesNotContain("loom_speculative", metrics.Render(stats), StringComparison.Ordinal);
        var lines = metrics.Render(stats with { Speculative = true, SpeculativeProposedTokens = 40, SpeculativeAcceptedTokens = 30 }).Split('\n');
        Assert.Contains("loom_speculative_proposed_tokens_total 40", lines);
        Assert.Contains("loom_speculative_accepted_tokens_total 30", lines);
        Assert.Contains("loom_speculative_acceptance_rate 0.75", lines);
        Assert.Contains("# TYPE loom_speculative_accepted_tokens_total counter", lines);
    }

    [Fact]
    public void OnlyTheSequentialEngineSpeculates()
    {
        using var model = Model();
        var e = Assert.Throws<ArgumentException>(() => EngineFactory.Create(model, new ByteVocabulary(), "m",
            new ServingEngineOptions { Kind = EngineKind.Batching, Speculative = new SpeculativeOptions() }));
        Assert.Contains("--engine sequential", e.Message);
        using var engine = EngineFactory.Create(model, new ByteVocabulary(), "m", new ServingEngineOptions { Kind = EngineKind.Sequential, Speculative = new SpeculativeOptions() });
        Assert.True(engine.Stats.Speculative);
    }

    [Fact]
    public async Task MetricsCountTheServedRequestsDraftTokens()
    {
        using var model = Model();
        using var engine = EngineFactory.Create(model, new ByteVocabulary(), "m",
            new ServingEngineOptions { Kind = EngineKind.Sequential, Speculative = new SpeculativeOptions { DraftTokens = 3 } });
        await using var server = await LoomServer.StartAsync(engine, new ServerOptions { Port = 0 });
        using var http = new HttpClient { BaseAddress = server.Address };
        using (var completion = await http.PostAsJsonAsync("/v1/completions", new { model = "m", prompt = "la la la la la la", max_tokens = 30, temperature = 0, ignore_eos = true }))
            completion.EnsureSuccessStatusCode();
        var lines = (await http.GetStringAsync("/metrics")).Split('\n');
        long Value(string name) => long.Parse(lines.Single(l => l.StartsWith(name + " ", StringComparison.Ordinal))[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        long proposed = Value("loom_speculative_proposed_tokens_total"), accepted = Value("loom_speculative_accepted_tokens_total");
        Assert.Equal(engine.Stats.SpeculativeProposedTokens, proposed);
        Assert.InRange(proposed, 1, 30 * 3); // at most k = 3 per round, at most one round per token
        Assert.InRange(accepted, 0, proposed);
    }
}
