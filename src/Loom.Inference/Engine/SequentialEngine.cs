using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Data;
using Loom.Inference.Speculative;
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
    private readonly SpeculativeOptions? speculative;
    private long proposedTokens, acceptedTokens;

    /// <summary>Creates the engine.</summary>
    /// <param name="model">The model, in eval mode on its device.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="modelName">The name requests address it by.</param>
    /// <param name="maxQueue">The most requests that may wait; more are refused with <see cref="EngineOverloadedException"/>.</param>
    /// <param name="speculative">
    /// Decode speculatively (<see cref="SpeculativeDecoder"/>) with this proposer, or null for token-by-token decoding. Requests
    /// with penalties, log-probabilities or an output constraint, and encoder-decoder models, decode token by token regardless.
    /// </param>
    /// <exception cref="ArgumentException">The draft model's vocabulary is smaller than the target's.</exception>
    public SequentialEngine(LanguageModel model, IVocabulary vocabulary, string modelName, int maxQueue = 256, SpeculativeOptions? speculative = null)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxQueue);
        ModelName = modelName;
        this.maxQueue = maxQueue;
        device = ReferenceDecoder.DeviceOf(model);
        model.eval();
        if (speculative?.Draft is { } draft && draft.Options.VocabSize < Math.Min(vocabulary.Size, model.Options.VocabSize))
            throw new ArgumentException($"the draft's vocabulary of {draft.Options.VocabSize} ids is smaller than the target's {vocabulary.Size}: train the draft with the target's vocabulary");
        this.speculative = speculative;
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
        Interlocked.Read(ref promptTokens), Interlocked.Read(ref generatedTokens), 0)
    {
        Speculative = speculative is not null,
        SpeculativeProposedTokens = Interlocked.Read(ref proposedTokens),
        SpeculativeAcceptedTokens = Interlocked.Read(ref acceptedTokens),
    };

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
            if (speculative is not null && CanSpeculate(request))
            {
                RunSpeculative(speculative, request, output, updates, cancellationToken);
                return;
            }
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

    /// <summary>
    /// Whether speculative decoding gives this request what it asked for: the accept/reject rule keeps the distribution
    /// of temperature, top-k and top-p, but not penalties that change with each token, a constraint's mask or the
    /// per-token log-probabilities.
    /// </summary>
    private bool CanSpeculate(GenerationRequest request) =>
        !model.IsEncoderDecoder && request.Constraint is null && request.Sampling.LogProbs is null
        && request.Sampling.PresencePenalty == 0 && request.Sampling.FrequencyPenalty == 0;

    /// <summary>The speculative loop: each round's 1..k + 1 tokens go to the request's output until it finishes.</summary>
    private void RunSpeculative(SpeculativeOptions options, GenerationRequest request, RequestOutput output, ChannelWriter<GenerationUpdate> updates, CancellationToken cancellationToken)
    {
        using var proposer = options.CreateProposer(ContextLength);
        using var decoder = new SpeculativeDecoder(model, proposer, options.DraftTokens, request.Sampling, ContextLength, Vocabulary.Size);
        Interlocked.Add(ref promptTokens, request.Prompt.Count);
        decoder.Start(request.Prompt);
        while (output.Finished is null)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                updates.TryWrite(output.Cancel());
                break;
            }
            long proposed = decoder.ProposedTokens, accepted = decoder.AcceptedTokens;
            var tokens = decoder.Step();
            Interlocked.Add(ref proposedTokens, decoder.ProposedTokens - proposed);
            Interlocked.Add(ref acceptedTokens, decoder.AcceptedTokens - accepted);
            foreach (int token in tokens)
            {
                if (output.Accept(token, null) is { } update)
                {
                    Interlocked.Add(ref generatedTokens, update.Tokens.Count);
                    updates.TryWrite(update);
                }
                if (output.Finished is not null) break; // EOS, a stop sequence or the length: the rest of the round is dropped
            }
        }
        updates.TryComplete();
    }

    /// <inheritdoc />
    public void Dispose() => turn.Dispose();
}
