using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace Loom.Serving.Tests;

/// <summary>GET /metrics is Prometheus text with the engine's load and the server's latency histograms.</summary>
public sealed partial class MetricsEndpointTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private ServerHarness Server => fixture.Harness;

    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*)\})? (?<value>\S+)$""")]
    private static partial Regex Sample();

    [GeneratedRegex("""^# TYPE (?<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?<type>counter|gauge|histogram|summary|untyped)$""")]
    private static partial Regex Type();

    /// <summary>Parses the exposition text strictly: every sample belongs to a declared metric and has a number.</summary>
    private static (Dictionary<string, string> Types, List<(string Name, string Labels, double Value)> Samples) Parse(string text)
    {
        var types = new Dictionary<string, string>();
        var samples = new List<(string, string, double)>();
        foreach (string line in text.Split('\n').Where(l => l.Length > 0))
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal)) continue;
            var type = Type().Match(line);
            if (type.Success)
            {
                Assert.True(types.TryAdd(type.Groups["name"].Value, type.Groups["type"].Value), $"{type.Groups["name"].Value} is declared twice");
                continue;
            }
            var sample = Sample().Match(line);
            Assert.True(sample.Success, $"not a Prometheus sample line: '{line}'");
            string name = sample.Groups["name"].Value;
            string family = types.ContainsKey(name) ? name : Regex.Replace(name, "_(bucket|sum|count)$", "");
            Assert.True(types.ContainsKey(family), $"{name} has no # TYPE line before it");
            string raw = sample.Groups["value"].Value;
            double value = raw == "+Inf" ? double.PositiveInfinity : double.Parse(raw, CultureInfo.InvariantCulture);
            samples.Add((name, sample.Groups["labels"].Value, value));
        }
        return (types, samples);
    }

    [Fact]
    public async Task MetricsAreValidPrometheusTextWithTheExpectedNames()
    {
        using (var completion = await Server.PostAsync("/v1/completions", new { prompt = "Hello there", max_tokens = 6, ignore_eos = true }))
            Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        using var response = await Server.Http.GetAsync("/metrics");
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("0.0.4", response.Content.Headers.ContentType?.Parameters.Single(p => p.Name == "version").Value);
        var (types, samples) = Parse(await response.Content.ReadAsStringAsync());

        var expected = new Dictionary<string, string>
        {
            ["loom_requests_waiting"] = "gauge", ["loom_requests_running"] = "gauge", ["loom_kv_blocks_in_use"] = "gauge",
            ["loom_kv_blocks_total"] = "gauge", ["loom_prompt_tokens_total"] = "counter", ["loom_generation_tokens_total"] = "counter",
            ["loom_prefix_cache_hit_tokens_total"] = "counter", ["loom_generation_tokens_per_second"] = "gauge",
            ["loom_requests_finished_total"] = "counter", ["loom_time_to_first_token_seconds"] = "histogram",
            ["loom_inter_token_latency_seconds"] = "histogram",
        };
        foreach (var (name, type) in expected) Assert.Equal(type, types.GetValueOrDefault(name));

        double Value(string name, string labels = "") => samples.Single(s => s.Name == name && s.Labels == labels).Value;
        Assert.True(Value("loom_generation_tokens_total") >= 6);
        Assert.True(Value("loom_prompt_tokens_total") >= "Hello there".Length);
        Assert.Equal(0, Value("loom_requests_running"));
        Assert.True(Value("loom_requests_finished_total", "outcome=\"length\"") >= 1);
        foreach (string histogram in new[] { "loom_time_to_first_token_seconds", "loom_inter_token_latency_seconds" })
        {
            var buckets = samples.Where(s => s.Name == histogram + "_bucket").ToList();
            Assert.Equal("le=\"+Inf\"", buckets[^1].Labels);
            for (int i = 1; i < buckets.Count; i++) Assert.True(buckets[i].Value >= buckets[i - 1].Value, $"{histogram} buckets are not cumulative");
            double count = Value(histogram + "_count");
            Assert.Equal(count, buckets[^1].Value);
            Assert.True(count >= 1, $"{histogram} has no observations");
            Assert.True(Value(histogram + "_sum") > 0);
        }
        // This class's server saw one request of six tokens: one time to first token and five gaps.
        Assert.Equal(1, Value("loom_time_to_first_token_seconds_count"));
        Assert.Equal(5, Value("loom_inter_token_latency_seconds_count"));
    }
}
