using System.ClientModel;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Models;
using OpenAI;
using OpenAI.Chat;
using static TorchSharp.torch;

namespace Loom.Serving.Tests;

/// <summary>A tiny random model behind a real <see cref="LoomServer"/> on 127.0.0.1 (a free port), with an HTTP client.</summary>
internal sealed class ServerHarness : IAsyncDisposable
{
    public const string ModelName = "tiny-test";

    private ServerHarness(LanguageModel model, SequentialEngine sequential, IGenerationEngine engine, LoomServer server)
    {
        Model = model;
        Sequential = sequential;
        Engine = engine;
        Server = server;
        Http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
    }

    /// <summary>The served model: a decoder-only one, or a T5 encoder-decoder when started with <c>encoderDecoder</c>.</summary>
    public LanguageModel Model { get; }

    /// <summary>The sequential engine: what the server serves unless batching or a wrapper was asked for, and the reference.</summary>
    public SequentialEngine Sequential { get; }

    /// <summary>What the server serves.</summary>
    public IGenerationEngine Engine { get; }

    public LoomServer Server { get; }

    public HttpClient Http { get; }

    public IVocabulary Vocabulary => Engine.Vocabulary;

    public static async Task<ServerHarness> StartAsync(int contextLength = 128, IReadOnlyList<string>? apiKeys = null, int maxQueue = 256,
        Func<IGenerationEngine, IGenerationEngine>? wrap = null, TimeSpan? shutdownTimeout = null, bool batching = false,
        IVocabulary? vocabulary = null, bool encoderDecoder = false)
    {
        using var generator = new Generator(17);
        LanguageModel model = encoderDecoder
            ? TinyModels.T5(258, contextLength).Build(generator: generator) // prompts go to the encoder
            : new DecoderLm(new DecoderLmOptions
            {
                VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = contextLength,
            }, generator: generator);
        // The served engine uses the given vocabulary (bytes by default); the reference always uses plain bytes.
        var servedVocabulary = vocabulary ?? new ByteVocabulary();
        var sequential = new SequentialEngine(model, batching ? new ByteVocabulary() : servedVocabulary, ModelName, maxQueue);
        // The batching engine serves when asked; the sequential one stays the reference either way.
        IGenerationEngine served = batching
            ? new ContinuousBatchingEngine(model, servedVocabulary, ModelName, new EngineOptions { BlockSize = 8, MaxRunning = 16, MaxQueue = maxQueue })
            : sequential;
        var engine = wrap is null ? served : wrap(served);
        var options = new ServerOptions { Port = 0, ApiKeys = apiKeys ?? [], ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(10) };
        return new ServerHarness(model, sequential, engine, await LoomServer.StartAsync(engine, options));
    }

    /// <summary>The official OpenAI client pointed at this server.</summary>
    public ChatClient Chat(string apiKey = "no-key-needed") =>
        new(ModelName, new ApiKeyCredential(apiKey), new OpenAIClientOptions { Endpoint = Server.ApiBase, NetworkTimeout = TimeSpan.FromMinutes(2) });

    public Task<HttpResponseMessage> PostAsync(string path, string json, string? apiKey = null, CancellationToken cancellationToken = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return Http.SendAsync(request, cancellationToken);
    }

    public Task<HttpResponseMessage> PostAsync(string path, object body, string? apiKey = null) => PostAsync(path, JsonSerializer.Serialize(body), apiKey);

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    /// <summary>What the engine itself produces for a prompt: the reference the server's replies must equal.</summary>
    public async Task<(string Text, FinishReason Finish, int CompletionTokens)> ReferenceAsync(IReadOnlyList<int> prompt, SamplingOptions sampling)
    {
        var text = new StringBuilder();
        GenerationUpdate? last = null;
        await foreach (var update in Sequential.GenerateAsync(new GenerationRequest(prompt, sampling)))
        {
            text.Append(update.Text);
            last = update;
        }
        return (text.ToString(), last!.FinishReason!.Value, last.CompletionTokens);
    }

    /// <summary>Waits (without a fixed delay) until <paramref name="condition"/> holds; fails after a generous limit.</summary>
    public static Task WaitUntilAsync(Func<bool> condition, string what) => Eventually.UntilAsync(condition, what);

    /// <summary>Waits (without a fixed delay) until <paramref name="condition"/> holds; fails after a generous limit.</summary>
    public static Task WaitUntilAsync(Func<Task<bool>> condition, string what) => Eventually.UntilAsync(condition, what);

    /// <summary>Reads a server-sent-event stream: the payload of each <c>data:</c> line, in order.</summary>
    public static async IAsyncEnumerable<string> EventsAsync(HttpResponseMessage response, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            yield return line["data: ".Length..];
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
        if (!ReferenceEquals(Engine, Sequential)) Sequential.Dispose();
        Model.Dispose();
    }
}

/// <summary>A server shared by the tests of one class (xunit class fixture).</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync();

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

/// <summary>
/// An engine that holds every request after its first update until <see cref="Open"/> is called, so a
/// test can keep requests running (holding the real engine's turn) for as long as it needs.
/// </summary>
internal sealed class GatedEngine(IGenerationEngine inner) : IGenerationEngine
{
    private readonly TaskCompletionSource gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int held;

    public int Held => Volatile.Read(ref held);

    public void Open() => gate.TrySetResult();

    public string ModelName => inner.ModelName;

    public IVocabulary Vocabulary => inner.Vocabulary;

    public int ContextLength => inner.ContextLength;

    public bool IsEncoderDecoder => inner.IsEncoderDecoder;

    public EngineStats Stats => inner.Stats;

    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        bool first = true;
        await foreach (var update in inner.GenerateAsync(request, cancellationToken))
        {
            yield return update;
            if (first)
            {
                first = false;
                Interlocked.Increment(ref held);
                await gate.Task.WaitAsync(cancellationToken);
            }
        }
    }

    public void Dispose() => inner.Dispose();
}

/// <summary>
/// Bytes, but the engine's detokenizing of a request's <c>n</c>-th generated token (the vocabulary's decode call
/// 1 + n: one for the prompt, then one per token) blocks until <see cref="Open"/>. The engines detokenize each token on their worker (or
/// engine) thread as soon as it is sampled, so while held the request is known to be running, to have
/// streamed exactly n - 1 tokens, and to be unable to run to its end however fast the machine is.
/// </summary>
internal sealed class HoldingVocabulary(int holdAtCall) : IVocabulary
{
    private readonly ByteVocabulary bytes = new();
    private readonly ManualResetEventSlim gate = new();
    private readonly TaskCompletionSource held = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int calls;

    /// <summary>Completes once the engine is blocked in the held decode.</summary>
    public Task Held => held.Task;

    public void Open() => gate.Set();

    public string Name => bytes.Name;

    public int Size => bytes.Size;

    public int EosId => bytes.EosId;

    public int PadId => bytes.PadId;

    public int[] Encode(string text) => bytes.Encode(text);

    public string Decode(ReadOnlySpan<int> ids)
    {
        // Counted by call, not by length: the streaming detokenizer decodes a short window of the newest ids.
        if (Interlocked.Increment(ref calls) >= holdAtCall && !gate.IsSet)
        {
            held.TrySetResult();
            // A bound only so that a broken test cannot hang the run; the test opens the gate itself.
            if (!gate.Wait(Eventually.DefaultLimit)) throw new TimeoutException("the test never opened the gate");
        }
        return bytes.Decode(ids);
    }
}

/// <summary>Passes requests through unchanged and reports when the server cancels one (the token it passes is cancelled).</summary>
internal sealed class CancellationWitness(IGenerationEngine inner) : IGenerationEngine
{
    private readonly TaskCompletionSource cancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once the token of a request has been cancelled.</summary>
    public Task Cancelled => cancelled.Task;

    public string ModelName => inner.ModelName;

    public IVocabulary Vocabulary => inner.Vocabulary;

    public int ContextLength => inner.ContextLength;

    public bool IsEncoderDecoder => inner.IsEncoderDecoder;

    public EngineStats Stats => inner.Stats;

    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // Registered before the inner engine registers its own callbacks on the token, so (callbacks run
        // last-registered first) by the time this one reports, the engine has seen the cancellation.
        using var registration = cancellationToken.Register(() => cancelled.TrySetResult());
        await foreach (var update in inner.GenerateAsync(request, cancellationToken))
            yield return update;
    }

    public void Dispose() => inner.Dispose();
}
