using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Data;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Serves one request at a time with a contiguous KV cache: prefill the prompt, then decode token by
/// token, while later requests wait in a bounded queue. The baseline that continuous batching is
/// measured against, and the simplest correct engine.
/// </summary>
public sealed class SequentialEngine : IGenerationEngine
{
    private readonly LanguageModel model;
    private readonly Device device;
    private readonly SemaphoreSlim turn = new(1, 1);
    private readonly int maxQueue;
    private int waiting, running;
    private long promptTokens, generatedTokens;

    /// <summary>Creates the engine.</summary>
    /// <param name="model">The model, in eval mode on its device.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="modelName">The name requests address it by.</param>
    /// <param name="maxQueue">The most requests that may wait; more are refused with <see cref="EngineOverloadedException"/>.</param>
    public SequentialEngine(LanguageModel model, IVocabulary vocabulary, string modelName, int maxQueue = 256)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxQueue);
        ModelName = modelName;
        this.maxQueue = maxQueue;
        device = ReferenceDecoder.DeviceOf(model);
        model.eval();
    }

    /// <inheritdoc />
    public string ModelName { get; }

    /// <inheritdoc />
    public IVocabulary Vocabulary { get; }

    /// <inheritdoc />
    public int ContextLength => model.ContextLength;

    /// <inheritdoc />
    public bool IsEncoderDecoder => model.IsEncoderDecoder;

    /// <inheritdoc />
    public EngineStats Stats => new(Volatile.Read(ref waiting), Volatile.Read(ref running), 0, 0,
        Interlocked.Read(ref promptTokens), Interlocked.Read(ref generatedTokens), 0);

    /// <inheritdoc />
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (request?.Images.Count > 0) throw new ArgumentException("the sequential engine takes text only: serve prompts with images with the batching engine");
        ArgumentNullException.ThrowIfNull(request);
        var output = new RequestOutput(request, Vocabulary, ContextLength, model.IsEncoderDecoder); // checks the prompt before queueing
        if (Interlocked.Increment(ref waiting) > maxQueue)
        {
            Interlocked.Decrement(ref waiting);
            throw new EngineOverloadedException($"{maxQueue} requests are already waiting; retry later");
        }
        try
        {
            await turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref waiting);
        }
        Interlocked.Increment(ref running);
        // Cancelled by the caller's token, or here when the caller stops enumerating early: either way
        // the worker stops at its next token, and the next request waits until it has.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task? work = null;
        try
        {
            // The model runs on a worker thread; updates flow back through a channel.
            var updates = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            work = Task.Run(() => Run(request, output, updates.Writer, stop.Token), CancellationToken.None);
            await foreach (var update in updates.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
                yield return update;
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            if (work is not null) await work.ConfigureAwait(false); // Run reports its failures through the channel; it never throws
            Interlocked.Decrement(ref running);
            turn.Release();
        }
    }

    private void Run(GenerationRequest request, RequestOutput output, ChannelWriter<GenerationUpdate> updates, CancellationToken cancellationToken)
    {
        try
        {
            using var sampler = new RequestSampler(request.Sampling, Vocabulary, request.Constraint?.Invoke());
            using var cache = KvCache.For(model, 1, ContextLength);
            Interlocked.Add(ref promptTokens, request.Prompt.Count);
            if (model.IsEncoderDecoder)
                using (var scope = NewDisposeScope())
                using (no_grad())
                    cache.Memory = model.Encode(tensor(request.Prompt.Select(t => (long)t).ToArray(), device: device).unsqueeze(0)); // (1, S), once
            var input = model.DecoderPrefix(request.Prompt, Vocabulary.PadId).Select(t => (long)t).ToArray();
            while (output.Finished is null)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    updates.TryWrite(output.Cancel());
                    break;
                }
                int token;
                TokenLogProb? logProb;
                using (var scope = NewDisposeScope())
                using (no_grad())
                {
                    var logits = cache.Run(model, tensor(input, device: device).unsqueeze(0)); // (1, T, V)
                    (token, logProb) = sampler.Next(logits[0, -1]);
                }
                input = [token];
                if (output.Accept(token, logProb) is { } update)
                {
                    Interlocked.Add(ref generatedTokens, update.Tokens.Count);
                    updates.TryWrite(update);
                }
            }
            updates.TryComplete();
        }
        catch (Exception e)
        {
            updates.TryComplete(e);
        }
    }

    /// <inheritdoc />
    public void Dispose() => turn.Dispose();
}
