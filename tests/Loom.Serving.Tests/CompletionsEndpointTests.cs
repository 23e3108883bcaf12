using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Inference;

namespace Loom.Serving.Tests;

/// <summary>/v1/completions over plain HTTP (the OpenAI 2.x client has no legacy-completions client).</summary>
public sealed class CompletionsEndpointTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private ServerHarness Server => fixture.Harness;

    private const string Prompt = "It is a truth universally acknowledged";

    [Fact]
    public async Task AJsonCompletionIsWhatTheEngineGenerates()
    {
        var expected = await Server.ReferenceAsync(Server.Vocabulary.Encode(Prompt), new SamplingOptions { Temperature = 0, MaxTokens = 10 });
        using var response = await Server.PostAsync("/v1/completions", new { model = ServerHarness.ModelName, prompt = Prompt, max_tokens = 10, temperature = 0, user = "ignored" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var json = await ServerHarness.JsonAsync(response);
        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", json.GetProperty("id").GetString());
        Assert.Equal(ServerHarness.ModelName, json.GetProperty("model").GetString());
        var choice = json.GetProperty("choices").EnumerateArray().Single();
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal(expected.Finish == FinishReason.Length ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        var usage = json.GetProperty("usage");
        Assert.Equal(Prompt.Length, usage.GetProperty("prompt_tokens").GetInt32()); // byte vocabulary: one token per ASCII character
        Assert.Equal(expected.CompletionTokens, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Prompt.Length + expected.CompletionTokens, usage.GetProperty("total_tokens").GetInt32());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StreamingSendsTheSameTextAsEventsThenDone(bool includeUsage)
    {
        var body = new Dictionary<string, object> { ["prompt"] = Prompt, ["max_tokens"] = 12, ["temperature"] = 0, ["ignore_eos"] = true };
        using var plain = await Server.PostAsync("/v1/completions", body);
        string expected = (await ServerHarness.JsonAsync(plain)).GetProperty("choices")[0].GetProperty("text").GetString()!;

        body["stream"] = true;
        if (includeUsage) body["stream_options"] = new { include_usage = true };
        using var response = await Server.PostAsync("/v1/completions", body);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ServerHarness.EventsAsync(response).ToListAsync();
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0]).ToList();
        Assert.Equal(12, withChoices.Count); // one chunk per token, ignore_eos keeps going to max_tokens
        Assert.Equal(expected, string.Concat(withChoices.Select(c => c.GetProperty("text").GetString())));
        Assert.All(withChoices[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("finish_reason").ValueKind));
        Assert.Equal("length", withChoices[^1].GetProperty("finish_reason").GetString());
        var usageChunks = chunks.Where(c => c.TryGetProperty("usage", out _)).ToList();
        if (!includeUsage)
        {
            Assert.Empty(usageChunks);
            return;
        }
        var last = Assert.Single(usageChunks);
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        Assert.Equal(12, last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Prompt.Length, last.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ATokenIdPromptWithIgnoreEosRunsToMaxTokens()
    {
        using var response = await Server.PostAsync("/v1/completions", new { prompt = new[] { 72, 105, 256, 33 }, max_tokens = 9, ignore_eos = true, seed = 3 });
        var json = await ServerHarness.JsonAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(4, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(9, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndTheSeedMatters()
    {
        async Task<string> Sample(int seed)
        {
            using var r = await Server.PostAsync("/v1/completions", new { prompt = Prompt, max_tokens = 16, temperature = 1.0, top_p = 0.95, top_k = 50, seed, ignore_eos = true });
            return (await ServerHarness.JsonAsync(r)).GetProperty("choices")[0].GetProperty("text").GetString()!;
        }
        string first = await Sample(1);
        Assert.Equal(first, await Sample(1));
        Assert.NotEqual(first, await Sample(2));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StopIsAStringOrAnArrayAndCutsTheText(bool asArray)
    {
        var free = await Server.ReferenceAsync(Server.Vocabulary.Encode(Prompt), new SamplingOptions { Temperature = 0, MaxTokens = 24, StopAtEos = false });
        Assert.True(free.Text.Length >= 10, $"the reference '{free.Text}' is too short to pick a stop sequence from");
        string stop = free.Text.Substring(6, 3);
        object stopField = asArray ? new[] { "never-generated-1", stop } : stop;
        using var response = await Server.PostAsync("/v1/completions", new { prompt = Prompt, max_tokens = 24, temperature = 0, ignore_eos = true, stop = stopField });
        var choice = (await ServerHarness.JsonAsync(response)).GetProperty("choices")[0];
        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task LogprobsGiveEveryTokenItsAlternativesAndOffsets()
    {
        using var response = await Server.PostAsync("/v1/completions", new { prompt = Prompt, max_tokens = 5, temperature = 0, ignore_eos = true, logprobs = 2 });
        var logprobs = (await ServerHarness.JsonAsync(response)).GetProperty("choices")[0].GetProperty("logprobs");
        var tokens = logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        var values = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(v => v.GetDouble()).ToList();
        var tops = logprobs.GetProperty("top_logprobs").EnumerateArray().ToList();
        var offsets = logprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToList();
        Assert.Equal(5, tokens.Count);
        Assert.Equal(5, values.Count);
        Assert.Equal(5, tops.Count);
        Assert.Equal(Prompt.Length, offsets[0]);
        for (int i = 1; i < 5; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
        for (int i = 0; i < 5; i++)
        {
            var alternatives = tops[i].EnumerateObject().ToList();
            Assert.InRange(alternatives.Count, 1, 2);
            Assert.Equal(alternatives.Max(a => a.Value.GetDouble()), values[i], 5); // greedy picks the most likely
        }
    }

    [Fact]
    public async Task ModelsListsTheServedModelAndHealthSaysOk()
    {
        var models = await ServerHarness.JsonAsync(await Server.Http.GetAsync("/v1/models"));
        Assert.Equal("list", models.GetProperty("object").GetString());
        var model = models.GetProperty("data").EnumerateArray().Single();
        Assert.Equal(ServerHarness.ModelName, model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.Equal(ServerHarness.ModelName, (await ServerHarness.JsonAsync(await Server.Http.GetAsync($"/v1/models/{ServerHarness.ModelName}"))).GetProperty("id").GetString());
        using var health = await Server.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("ok", (await ServerHarness.JsonAsync(health)).GetProperty("status").GetString());
    }
}
