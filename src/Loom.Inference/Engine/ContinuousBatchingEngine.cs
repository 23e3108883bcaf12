using System.Runtime.CompilerServices;
using Loom.Data;
using Loom.Distributed;
using Loom.Inference.Paging;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Serves many requests at once (continuous batching): every step schedules a batch under a token
/// budget, runs it as one forward pass over sequences of different lengths whose keys and values
/// live in a paged KV cache, then samples and streams each sequence's next token. New requests join
/// while others decode; long prompts are prefilled in chunks; when blocks run out the newest
/// sequence is preempted and later recomputed; prompts that share a prefix share its blocks. An
/// encoder-decoder model's prompt runs through the encoder once per request; the cross-attention keys
/// and values it yields stay with the request until it ends, and the decoder's self-attention uses the
/// paged cache.
/// </summary>
/// <remarks>
/// Each step is schedule → execute → update, as in vLLM v1, with explicit hand-off records:
/// <see cref="Scheduler.Schedule"/> decides which sequences compute which tokens (and appends them to their block
/// tables) as a <see cref="SchedulerOutput"/>; <see cref="ModelRunner.Execute"/> runs the model and samples every row
/// that reached the end of what it knows, all rows at once on the device, as a <see cref="ModelRunnerOutput"/>;
/// <see cref="Scheduler.Update"/> appends the tokens and <see cref="OutputProcessor.Process"/> streams and retires.
/// All of it runs on one engine thread; callers talk to it through queues and channels.
/// </remarks>
public sealed class ContinuousBatchingEngine : IGenerationEngine
{
    private readonly LanguageModel model;
    private readonly EngineOptions options;
    private readonly BlockAllocator allocator;
    private readonly PagedKvStore store;
    private readonly Scheduler scheduler;
    private readonly ModelRunner runner;
    private readonly OutputProcessor outputs;
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread thread;
    private volatile bool stopping;
    private int runningCount, blocksInUse;
    private long nextId;

    /// <summary>Creates the engine and starts its thread.</summary>
    /// <param name="model">The model; it is put in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="modelName">The name requests address it by.</param>
    /// <param name="options">Cache, batch and queue settings.</param>
    /// <exception cref="ArgumentException">The KV-cache pool cannot hold one full context.</exception>
    public ContinuousBatchingEngine(LanguageModel model, IVocabulary vocabulary, string modelName, EngineOptions? options = null)
        : this(model, vocabulary, modelName, options, (ICommunicator?)null, false)
    {
    }

    /// <summary>
    /// Creates rank 0's engine of a model group (tensor-parallel serving) and starts its thread: it schedules, samples and
    /// streams, and every step its runner broadcasts the step's input to the other ranks, which run
    /// <see cref="ServeModelGroup"/> on their shards until this engine is disposed.
    /// </summary>
    /// <param name="model">Rank 0's shard (<see cref="LanguageModel.ShardForTensorParallel"/> over <paramref name="modelGroup"/>); it is put in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="modelName">The name requests address it by.</param>
    /// <param name="options">Cache, batch and queue settings: the same on every rank.</param>
    /// <param name="modelGroup">The model group; this process is its rank 0.</param>
    /// <exception cref="ArgumentException">The KV-cache pool cannot hold one full context, or this is not rank 0.</exception>
    /// <exception cref="NotSupportedException">The model is an encoder-decoder or reads images.</exception>
    public ContinuousBatchingEngine(LanguageModel model, IVocabulary vocabulary, string modelName, EngineOptions? options, ICommunicator modelGroup)
        : this(model, vocabulary, modelName, options, modelGroup ?? throw new ArgumentNullException(nameof(modelGroup)), true)
    {
    }

    private ContinuousBatchingEngine(LanguageModel model, IVocabulary vocabulary, string modelName, EngineOptions? options, ICommunicator? modelGroup, bool grouped = false)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        if (grouped && modelGroup!.Rank != 0) throw new ArgumentException($"rank {modelGroup.Rank} of the model group runs ServeModelGroup; the engine runs on rank 0", nameof(modelGroup));
        ModelName = modelName;
        this.options = options ?? new EngineOptions();
        var (layout, blocks, prefixCaching) = Pool(model, this.options);
        allocator = new BlockAllocator(blocks, this.options.BlockSize, prefixCaching);
        store = new PagedKvStore(layout, blocks, this.options.BlockSize, model.parameters().First().device);
        KvCacheBytes = store.Bytes;
        scheduler = new Scheduler(this.options);
        runner = modelGroup is null ? new ModelRunner(model, vocabulary, store) : new ModelRunner(model, vocabulary, store, modelGroup);
        outputs = new OutputProcessor(scheduler);
        thread = new Thread(Loop) { IsBackground = true, Name = "loom-engine" };
        thread.Start();
    }

    /// <summary>
    /// Runs a rank other than 0 of a tensor-parallel model group: keeps this rank's part of the KV cache and runs every
    /// step rank 0's engine broadcasts on this rank's shard; returns when rank 0's engine is disposed.
    /// </summary>
    /// <param name="model">This rank's shard; it is put in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="options">The same options as rank 0's engine (the pools must have as many blocks).</param>
    /// <param name="modelGroup">The model group; this process is not its rank 0.</param>
    public static void ServeModelGroup(LanguageModel model, IVocabulary vocabulary, EngineOptions? options, ICommunicator modelGroup)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(modelGroup);
        var resolved = options ?? new EngineOptions();
        var (layout, blocks, _) = Pool(model, resolved);
        using var store = new PagedKvStore(layout, blocks, resolved.BlockSize, model.parameters().First().device);
        new ModelRunner(model, vocabulary, store, modelGroup).ServeWorker();
    }

    /// <summary>
    /// The KV pool this rank holds: its layout (under tensor parallelism, this rank's key/value heads only), its blocks
    /// (the same count on every rank of a model group) and whether prefix caching is on. Puts the model in eval mode.
    /// </summary>
    private static (KvLayout Layout, int Blocks, bool PrefixCaching) Pool(LanguageModel model, EngineOptions options)
    {
        var first = model.parameters().First();
        model.eval();
        var shape = model.KvCacheShape;
        // Key/value kernels cut by heads (Megatron): this rank caches its own heads. Multi-query K/V stay whole.
        var split = model.TensorParallel;
        if (split.Parts > 1 && split.ShardedDims.Keys.Any(name => name.Contains("wk.", StringComparison.Ordinal)))
            shape = shape with { NumKvHeads = shape.NumKvHeads / split.Parts };
        var layout = KvLayout.For(shape, first.dtype);
        // A decoder token's keys and values depend on the encoder memory it cross-attends to, so blocks of
        // equal decoder tokens are not interchangeable between requests of an encoder-decoder.
        bool prefixCaching = options.PrefixCaching && !model.IsEncoderDecoder;
        int blocksPerContext = (model.ContextLength + options.BlockSize - 1) / options.BlockSize;
        var blockOptions = new KvBlockOptions
        {
            BlockSize = options.BlockSize,
            NumBlocks = options.NumBlocks ?? (options.KvCacheBytes is null ? blocksPerContext * options.MaxRunning : null),
            MemoryBudgetBytes = options.KvCacheBytes,
            EnablePrefixCaching = prefixCaching,
        };
        int blocks = blockOptions.ResolveNumBlocks(layout);
        if (blocks < blocksPerContext)
            throw new ArgumentException($"the KV cache has {blocks} blocks of {options.BlockSize} tokens, fewer than the {blocksPerContext} one full context of {model.ContextLength} tokens needs; give it more memory");
        return (layout, blocks, prefixCaching);
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
    public ImageInputSpec? ImageInput => model.ImageInput;

    /// <summary>Bytes of the KV-cache pool.</summary>
    public long KvCacheBytes { get; }

    /// <summary>Blocks in the KV-cache pool.</summary>
    public int KvBlocksTotal => allocator.NumBlocks;

    /// <summary>Times a running sequence was preempted (its blocks freed, to be recomputed later) since the engine started.</summary>
    public long Preemptions => scheduler.Preemptions;

    /// <summary>
    /// Times the encoder ran since the engine started: once per encoder-decoder request that reached a
    /// step (its memory is kept across preemption, so recomputing does not run it again); 0 for a
    /// decoder-only model. A counter bumped on the engine thread, for tests and metrics.
    /// </summary>
    public long EncoderRuns => runner.EncoderRuns;

    /// <inheritdoc />
    public EngineStats Stats => new(scheduler.WaitingCount, Volatile.Read(ref runningCount), Volatile.Read(ref blocksInUse), allocator.NumBlocks,
        outputs.PromptTokens, outputs.GeneratedTokens, scheduler.PrefixHitTokens);

    /// <inheritdoc />
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(stopping, this);
        var output = new RequestOutput(request, Vocabulary, ContextLength, model.IsEncoderDecoder); // checks the prompt before queueing
        var placeholders = CheckImages(request);
        // Prefix caching stays on for prompts with images, keyed by their pixels too: blocks are shared only between equal images and equal tokens.
        var table = new BlockTable(allocator, System.Runtime.InteropServices.MemoryMarshal.AsBytes(request.Images.SelectMany(i => i).ToArray().AsSpan()));
        var sequence = new EngineSequence(Interlocked.Increment(ref nextId), request, output, new RequestSampler(request.Sampling, Vocabulary, request.Constraint?.Invoke()), table,
            model.DecoderPrefix(request.Prompt, Vocabulary.PadId))
        {
            PlaceholdersBefore = placeholders,
        };
        if (!scheduler.Submit(sequence))
        {
            sequence.DisposeState();
            throw new EngineOverloadedException($"{options.MaxQueue} requests are already waiting; retry later");
        }
        wake.Release();
        using var registration = cancellationToken.Register(() => Cancel(sequence));
        try
        {
            await foreach (var update in sequence.Updates.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
                yield return update;
        }
        finally
        {
            Cancel(sequence); // a caller that stops reading early frees the sequence too
        }
        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>
    /// Checks a request's images against the model (it reads images, each of its size, one run of placeholder ids per image)
    /// and returns how many of the prompt's placeholder ids precede each prompt position (null without images).
    /// </summary>
    private int[]? CheckImages(GenerationRequest request)
    {
        if (request.Images.Count == 0) return null;
        var spec = model.ImageInput ?? throw new ArgumentException($"model '{ModelName}' reads text only: it cannot take images");
        int pixels = spec.ImageSize * spec.ImageSize;
        foreach (var image in request.Images)
            if (image.Length != pixels) throw new ArgumentException($"an image has {image.Length} pixels; the model reads {spec.ImageSize}x{spec.ImageSize} greyscale images ({pixels})");
        var before = new int[request.Prompt.Count + 1];
        for (int i = 0; i < request.Prompt.Count; i++) before[i + 1] = before[i] + (request.Prompt[i] == spec.PlaceholderId ? 1 : 0);
        if (before[^1] != request.Images.Count * spec.TokensPerImage)
            throw new ArgumentException($"the prompt has {before[^1]} image placeholder ids but its {request.Images.Count} images need {request.Images.Count * spec.TokensPerImage} ({spec.TokensPerImage} each)");
        return before;
    }

    private void Cancel(EngineSequence sequence)
    {
        if (scheduler.Cancel(sequence)) wake.Release();
    }

    private void Loop()
    {
        while (!stopping)
        {
            outputs.Cancelled(scheduler.TakeCancelled());
            PublishCounts();
            if (scheduler.IsIdle)
            {
                wake.Wait(100);
                continue;
            }
            try
            {
                var plan = scheduler.Schedule();
                if (plan.Rows.Count == 0)
                {
                    // Every running sequence is stuck mid-prompt for lack of blocks: free the newest so the others can go on.
                    if (scheduler.Running.Count > 0) scheduler.PreemptNewest();
                    else wake.Wait(10);
                    continue;
                }
                var output = runner.Execute(plan);
                scheduler.Update(plan, output);
                outputs.Process(plan, output);
            }
            catch (Exception e) when (!stopping)
            {
                // A failed step fails the requests in it, not the engine.
                foreach (var s in scheduler.Running.ToList()) outputs.Retire(s, e);
            }
            PublishCounts();
        }
        runner.StopWorkers();
        var (running, waiting) = scheduler.Drain();
        foreach (var s in running.Concat(waiting)) outputs.Retire(s, new ObjectDisposedException(nameof(ContinuousBatchingEngine)));
    }

    private void PublishCounts()
    {
        Volatile.Write(ref runningCount, scheduler.Running.Count);
        Volatile.Write(ref blocksInUse, allocator.Usage.InUse);
    }

    /// <summary>Stops the engine thread; requests still running or waiting end with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (stopping) return;
        stopping = true;
        wake.Release();
        thread.Join();
        store.Dispose();
        wake.Dispose();
    }
}
