using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Core;
using Loom.Data;
using Loom.Models;
using Loom.Serving;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>
/// The <c>serve-load</c> benchmark: Loom's OpenAI-compatible server under a bounded streaming load,
/// once per engine (one request at a time, then continuous batching), the same model and the same
/// requests in the same process. Everything is measured by the clients, over real HTTP on 127.0.0.1.
/// </summary>
internal static class ServeLoadBenchmark
{
    /// <summary>One request as its client saw it.</summary>
    private sealed record RequestTiming(double TimeToFirstTokenMs, IReadOnlyList<double> InterTokenMs, int OutputTokens);

    /// <summary>One load run: an engine under a number of concurrent clients.</summary>
    private sealed record LoadRow(EngineKind Engine, string EngineClass, int Clients, int Requests, long OutputTokens, double WallSeconds,
        double TtftP50, double TtftP99, double ItlP50, double ItlP99, int Failed)
    {
        public double TokensPerSecond => OutputTokens / WallSeconds;
    }

    public static string Run(ServeLoadSettings s)
    {
        if (s.Threads is int threads) torch.set_num_threads(threads);
        double? loadBefore = MachineInfo.LoadAverage();
        var device = Devices.Resolve(s.Device);
        var (model, vocabulary, description) = LoadModel(s, device);
        using var modelLifetime = model;
        model.eval();
        if (model.Options.MaxSequenceLength <= s.PromptTokens + s.OutputTokens)
            throw new ArgumentException($"--prompt-tokens + --output-tokens = {s.PromptTokens + s.OutputTokens} does not fit the model's context of {model.Options.MaxSequenceLength}");
        // Token ids, so that every prompt has exactly --prompt-tokens tokens whatever the vocabulary.
        int[] prompt = Prompt(vocabulary, s.PromptTokens);
        int maxQueue = Math.Max(256, s.Clients.Max() * 2);

        var rows = new List<LoadRow>();
        foreach (var kind in s.Engines)
        {
            using var engine = EngineFactory.Create(model, vocabulary, "serve-load", new ServingEngineOptions { Kind = kind, MaxQueue = maxQueue });
            var server = LoomServer.StartAsync(engine, new ServerOptions { Port = 0 }).GetAwaiter().GetResult();
            try
            {
                using var http = NewClient(server.Address, s.Clients.Max());
                Console.Error.WriteLine($"serve-load: {Name(kind)} engine ({engine.GetType().Name}) at {server.ApiBase}; warm-up request");
                _ = SendAsync(http, prompt, s.OutputTokens).GetAwaiter().GetResult();
                foreach (int clients in s.Clients)
                {
                    var row = LoadAsync(http, kind, engine.GetType().Name, clients, s, prompt).GetAwaiter().GetResult();
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  {clients} clients: {row.Requests} requests, {row.OutputTokens:N0} tokens in {row.WallSeconds:F2} s = {row.TokensPerSecond:N0} tokens/s; TTFT p50 {row.TtftP50:F1} ms, ITL p50 {row.ItlP50:F2} ms"));
                    rows.Add(row);
                }
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
        double? loadAfter = MachineInfo.LoadAverage();
        return Report(s, model, vocabulary, description, rows, (loadBefore, loadAfter));
    }

    /// <summary>The checkpoint's model and vocabulary, or the preset with random weights and the byte vocabulary.</summary>
    private static (LanguageModel Model, IVocabulary Vocabulary, string Description) LoadModel(ServeLoadSettings s, Device device)
    {
        if (s.Checkpoint is { } folder)
        {
            string checkpoint = Loom.Training.TrainingCheckpoint.Resolve(folder);
            var (loaded, manifest) = ModelCheckpoint.Load(checkpoint, device);
            return (loaded, Loom.Inference.CheckpointVocabulary.Load(checkpoint, manifest), $"checkpoint {checkpoint}");
        }
        var options = ModelPresets.Load(s.Preset);
        var bytes = new ByteVocabulary();
        if (options.VocabSize < bytes.Size)
            throw new ArgumentException($"the {s.Preset} preset's vocabulary ({options.VocabSize}) is smaller than the byte vocabulary's {bytes.Size}");
        return (options.Build(device, new Generator(unchecked((ulong)s.Seed))), bytes, $"{s.Preset} preset, random weights");
    }

    /// <summary>The first <paramref name="tokens"/> tokens of a fixed English text, repeated as needed.</summary>
    private static int[] Prompt(IVocabulary vocabulary, int tokens)
    {
        const string Text = "It was a fine morning, and the whole party walked down to the sea to watch the boats come in. ";
        var ids = new List<int>();
        while (ids.Count < tokens) ids.AddRange(vocabulary.Encode(Text));
        return [.. ids.Take(tokens)];
    }

    private static HttpClient NewClient(Uri address, int clients) =>
        new(new SocketsHttpHandler { MaxConnectionsPerServer = clients + 1, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            BaseAddress = address,
            Timeout = TimeSpan.FromHours(1), // a queued request in the sequential engine may wait long; the load is bounded anyway
        };

    /// <summary><paramref name="clients"/> concurrent clients, each sending its requests one after another.</summary>
    private static async Task<LoadRow> LoadAsync(HttpClient http, EngineKind kind, string engineClass, int clients, ServeLoadSettings s, int[] prompt)
    {
        var clock = Stopwatch.StartNew();
        var perClient = await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            var timings = new List<RequestTiming>();
            for (int r = 0; r < s.RequestsPerClient; r++) timings.Add(await SendAsync(http, prompt, s.OutputTokens).ConfigureAwait(false));
            return timings;
        }));
        double wall = clock.Elapsed.TotalSeconds;
        var all = perClient.SelectMany(t => t).ToList();
        var ok = all.Where(t => t.OutputTokens == s.OutputTokens).ToList();
        var ttft = ok.Select(t => t.TimeToFirstTokenMs).ToList();
        var itl = ok.SelectMany(t => t.InterTokenMs).ToList();
        return new LoadRow(kind, engineClass, clients, all.Count, all.Sum(t => (long)t.OutputTokens), wall,
            Percentile(ttft, 50), Percentile(ttft, 99), Percentile(itl, 50), Percentile(itl, 99), all.Count - ok.Count);
    }

    /// <summary>One streamed completion: the time to its first token chunk, the gaps between token chunks, its completion tokens (from usage).</summary>
    private static async Task<RequestTiming> SendAsync(HttpClient http, int[] prompt, int outputTokens)
    {
        string body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["prompt"] = prompt, ["max_tokens"] = outputTokens, ["ignore_eos"] = true, ["temperature"] = 0,
            ["stream"] = true, ["stream_options"] = new Dictionary<string, bool> { ["include_usage"] = true },
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var clock = Stopwatch.StartNew();
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"the server answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync().ConfigureAwait(false));
        double? first = null, last = null;
        var gaps = new List<double>();
        int completionTokens = 0;
        while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line["data: ".Length..];
            if (data == "[DONE]") break;
            double now = clock.Elapsed.TotalMilliseconds;
            using var chunk = JsonDocument.Parse(data);
            if (chunk.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                completionTokens = usage.GetProperty("completion_tokens").GetInt32();
            if (chunk.RootElement.GetProperty("choices").GetArrayLength() == 0) continue;
            // The server sends one chunk per generated token.
            if (first is null) first = now;
            else gaps.Add(now - last!.Value);
            last = now;
        }
        return new RequestTiming(first ?? double.NaN, gaps, completionTokens);
    }

    private static string Report(ServeLoadSettings s, LanguageModel model, IVocabulary vocabulary, string description, List<LoadRow> rows, (double? Before, double? After) load)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        void Line(FormattableString text) => sb.Append(text.ToString(inv)).Append('\n');

        Line($"## serve-load: OpenAI-compatible server under load, continuous batching vs one request at a time");
        Line($"");
        Line($"- date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Line($"- commit: {MachineInfo.GitCommit()}");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} logical CPUs, {MachineInfo.OperatingSystem()}; device {s.Device}");
        Line($"- runtime: libtorch intra-op threads {torch.get_num_threads()}; TorchSharp {MachineInfo.TorchSharpVersion()}, .NET {Environment.Version}");
        Line($"- load average (1 min) before / after: {Format(load.Before)} / {Format(load.After)}");
        Line($"- model: {description} ({model.ParameterCount:N0} parameters), {vocabulary.Name} vocabulary, float32");
        Line($"- load: per request the same {s.PromptTokens}-token prompt and {s.OutputTokens} output tokens (ignore_eos, greedy), streamed from POST /v1/completions over HTTP/1.1 on 127.0.0.1; each client sends {s.RequestsPerClient} requests one after another; server and clients share this process");
        Line($"- measured by the clients: output tokens/s = completion tokens of all requests over the run's wall time; TTFT = request sent to first token chunk; ITL = gaps between token chunks (one chunk per token)");
        var mismatched = rows.Where(r => r.Engine == EngineKind.Batching && r.EngineClass != "ContinuousBatchingEngine").Select(r => r.EngineClass).Distinct().ToList();
        if (mismatched.Count > 0)
            Line($"- note: the batching engine was served by {string.Join(", ", mismatched)}: continuous batching is not wired into EngineFactory yet, so its rows are not continuous batching");
        Line($"");
        Line($"| engine | class | clients | requests | output tokens | wall s | output tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | failed |");
        Line($"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            Line($"| {Name(r.Engine)} | {r.EngineClass} | {r.Clients} | {r.Requests} | {r.OutputTokens:N0} | {r.WallSeconds:F2} | {r.TokensPerSecond:N0} | {r.TtftP50:F1} | {r.TtftP99:F1} | {r.ItlP50:F2} | {r.ItlP99:F2} | {r.Failed} |");
        if (s.Engines.Count > 1)
        {
            var baseline = s.Engines[0];
            Line($"");
            Line($"| clients | {string.Join(" | ", s.Engines.Skip(1).Select(e => $"{Name(e)} / {Name(baseline)} tokens/s"))} |");
            Line($"|---:|{string.Concat(s.Engines.Skip(1).Select(_ => "---:|"))}");
            foreach (int clients in s.Clients)
            {
                double base_ = rows.First(r => r.Engine == baseline && r.Clients == clients).TokensPerSecond;
                Line($"| {clients} | {string.Join(" | ", s.Engines.Skip(1).Select(e => (rows.First(r => r.Engine == e && r.Clients == clients).TokensPerSecond / base_).ToString("F2", inv)))} |");
            }
        }
        if (rows.Any(r => r.Failed > 0))
            Line($"FAILED requests: {rows.Sum(r => r.Failed)} did not return {s.OutputTokens} tokens (they are left out of the latencies)");
        return sb.ToString();
    }

    private static string Name(EngineKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>Nearest-rank percentile; NaN for no values.</summary>
    private static double Percentile(IReadOnlyCollection<double> values, double percent)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        int rank = (int)Math.Ceiling(percent / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    private static string Format(double? value) => value is double v ? v.ToString("F2", CultureInfo.InvariantCulture) : "n/a";
}
