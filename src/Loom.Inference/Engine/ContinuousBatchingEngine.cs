using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Data;
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
/// Each step is schedule → execute → update, with <see cref="StepPlan"/> as the hand-off record:
/// <see cref="Schedule"/> decides which sequences compute which tokens (and appends them to their
/// block tables), <see cref="Execute"/> runs the model and returns the logits of sequences that
/// reached the end of what they know, <see cref="Update"/> samples, streams and retires them. All of it
/// runs on one engine thread; callers talk to it through queues and channels.
/// </remarks>
public sealed class ContinuousBatchingEngine : IGenerationEngine
{
    private readonly LanguageModel model;
    private readonly Device device;
    private readonly EngineOptions options;
    private readonly BlockAllocator allocator;
    private readonly PagedKvStore store;
    private readonly ConcurrentQueue<Sequence> arrivals = new();
    private readonly LinkedList<Sequence> waiting = new(); // engine thread only
    private readonly List<Sequence> running = [];          // engine thread only, in admission order
    private readonly SemaphoreSlim wake = new(0);
    private readonly Thread thread;
    private volatile bool stopping;
    private int waitingCount, runningCount, blocksInUse;
    private long promptTokens, generatedTokens, prefixHitTokens, preemptions, encoderRuns;

    /// <summary>Creates the engine and starts its thread.</summary>
    /// <param name="model">The model; it is put in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="modelName">The name requests address it by.</param>
    /// <param name="options">Cache, batch and queue settings.</param>
    /// <exception cref="ArgumentException">The KV-cache pool cannot hold one full context.</exception>
    public ContinuousBatchingEngine(LanguageModel model, IVocabulary vocabulary, string modelName, EngineOptions? options = null)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        ModelName = modelName;
        this.options = options ?? new EngineOptions();
        var first = model.parameters().First();
        device = first.device;
        model.eval();
        var layout = KvLayout.For(model.KvCacheShape, first.dtype);
        // A decoder token's keys and values depend on the encoder memory it cross-attends to, so blocks of
        // equal decoder tokens are not interchangeable between requests of an encoder-decoder.
        bool prefixCaching = this.options.PrefixCaching && !model.IsEncoderDecoder;
        int blocksPerContext = (ContextLength + this.options.BlockSize - 1) / this.options.BlockSize;
        var blockOptions = new KvBlockOptions
        {
            BlockSize = this.options.BlockSize,
            NumBlocks = this.options.NumBlocks ?? (this.options.KvCacheBytes is null ? blocksPerContext * this.options.MaxRunning : null),
            MemoryBudgetBytes = this.options.KvCacheBytes,
            EnablePrefixCaching = prefixCaching,
        };
        int blocks = blockOptions.ResolveNumBlocks(layout);
        if (blocks < blocksPerContext)
            throw new ArgumentException($"the KV cache has {blocks} blocks of {this.options.BlockSize} tokens, fewer than the {blocksPerContext} one full context of {ContextLength} tokens needs; give it more memory");
        allocator = new BlockAllocator(blocks, this.options.BlockSize, prefixCaching);
        store = new PagedKvStore(layout, blocks, this.options.BlockSize, device);
        KvCacheBytes = store.Bytes;
        thread = new Thread(Loop) { IsBackground = true, Name = "loom-engine" };
        thread.Start();
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
    public long Preemptions => Interlocked.Read(ref preemptions);

    /// <summary>
    /// Times the encoder ran since the engine started: once per encoder-decoder request that reached a
    /// step (its memory is kept across preemption, so recomputing does not run it again); 0 for a
    /// decoder-only model. A counter bumped on the engine thread, for tests and metrics.
    /// </summary>
    public long EncoderRuns => Interlocked.Read(ref encoderRuns);

    /// <inheritdoc />
    public EngineStats Stats => new(Volatile.Read(ref waitingCount), Volatile.Read(ref runningCount), Volatile.Read(ref blocksInUse), allocator.NumBlocks,
        Interlocked.Read(ref promptTokens), Interlocked.Read(ref generatedTokens), Interlocked.Read(ref prefixHitTokens));

    /// <inheritdoc />
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(stopping, this);
        var output = new RequestOutput(request, Vocabulary, ContextLength, model.IsEncoderDecoder); // checks the prompt before queueing
        var placeholders = CheckImages(request);
        if (Interlocked.Increment(ref waitingCount) > options.MaxQueue)
        {
            Interlocked.Decrement(ref waitingCount);
            throw new EngineOverloadedException($"{options.MaxQueue} requests are already waiting; retry later");
        }
        // Prefix caching stays on for prompts with images, keyed by their pixels too: blocks are shared only between equal images and equal tokens.
        var table = new BlockTable(allocator, System.Runtime.InteropServices.MemoryMarshal.AsBytes(request.Images.SelectMany(i => i).ToArray().AsSpan()));
        var sequence = new Sequence(request, output, new RequestSampler(request.Sampling, Vocabulary, request.Constraint?.Invoke()), table, model.DecoderPrefix(request.Prompt, Vocabulary.PadId))
        {
            PlaceholdersBefore = placeholders,
        };
        arrivals.Enqueue(sequence);
        wake.Release();
        using var registration = cancellationToken.Register(() => sequence.Cancel(wake));
        try
        {
            await foreach (var update in sequence.Updates.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
                yield return update;
        }
        finally
        {
            sequence.Cancel(wake); // a caller that stops reading early frees the sequence too
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

    private void Loop()
    {
        while (!stopping)
        {
            Admit();
            if (running.Count == 0 && waiting.Count == 0)
            {
                wake.Wait(100);
                continue;
            }
            try
            {
                var plan = Schedule();
                if (plan.Rows.Count == 0)
                {
                    // Every running sequence is stuck mid-prompt for lack of blocks: free the newest so the others can go on.
                    if (running.Count > 0) Preempt(running[^1]);
                    else wake.Wait(10);
                    continue;
                }
                var logits = Execute(plan);
                Update(plan, logits);
            }
            catch (Exception e) when (!stopping)
            {
                // A failed step fails the requests in it, not the engine.
                foreach (var s in running.ToList()) Retire(s, e);
            }
            PublishCounts();
        }
        foreach (var s in running.ToList()) Retire(s, new ObjectDisposedException(nameof(ContinuousBatchingEngine)));
        foreach (var s in waiting)
        {
            s.Sampler.Dispose();
            s.Memory?.Dispose();
            s.SoftTokens?.Dispose();
            s.Updates.Writer.TryComplete(new ObjectDisposedException(nameof(ContinuousBatchingEngine)));
        }
    }

    /// <summary>Moves new requests into the waiting queue and drops cancelled ones.</summary>
    private void Admit()
    {
        while (arrivals.TryDequeue(out var s)) waiting.AddLast(s);
        for (var node = waiting.First; node is not null;)
        {
            var next = node.Next;
            if (node.Value.IsCancelled)
            {
                waiting.Remove(node);
                Interlocked.Decrement(ref waitingCount);
                node.Value.Sampler.Dispose();
                node.Value.Memory?.Dispose();
                node.Value.SoftTokens?.Dispose();
                Finish(node.Value, node.Value.Output.Cancel());
            }
            node = next;
        }
        foreach (var s in running.Where(s => s.IsCancelled).ToList())
            Retire(s, null, s.Output.Cancel());
        PublishCounts();
    }

    /// <summary>
    /// Decides this step's work: one decode token for every running sequence that has sampled all it
    /// knows (preempting the newest when blocks run out), then prompt chunks for sequences being
    /// prefilled, then new sequences from the queue, until the token budget or the batch is full.
    /// </summary>
    private StepPlan Schedule()
    {
        var rows = new List<(Sequence Sequence, int Start, int Count)>();
        int budget = options.TokenBudget;
        foreach (var s in running.ToList())
        {
            if (!running.Contains(s) || s.Computed != s.Tokens.Count - 1 || budget == 0) continue;
            while (!s.Table.TryAppend([s.Tokens[^1]]))
            {
                var victim = running[^1];
                Preempt(victim);
                if (victim == s) break;
            }
            if (!running.Contains(s)) continue;
            rows.Add((s, s.Computed, 1));
            budget--;
        }
        foreach (var s in running)
        {
            if (budget == 0 || s.Computed >= s.Tokens.Count - 1 || rows.Any(r => r.Sequence == s)) continue;
            if (TryPrefill(s, ref budget) is { } row) rows.Add(row);
        }
        while (budget > 0 && running.Count < options.MaxRunning && waiting.First is { } node)
        {
            var s = node.Value;
            if (TryPrefill(s, ref budget) is not { } row) break; // no blocks: wait for running ones to finish
            waiting.RemoveFirst();
            Interlocked.Decrement(ref waitingCount);
            running.Add(s);
            rows.Add(row);
        }
        return new StepPlan(rows);
    }

    /// <summary>Appends the next prompt chunk of <paramref name="s"/> to its table (sharing cached prefix blocks) and returns its row.</summary>
    private (Sequence, int, int)? TryPrefill(Sequence s, ref int budget)
    {
        int from = s.Table.TokenCount;
        int take = Math.Min(s.Tokens.Count - from, budget);
        if (take <= 0) return null;
        bool firstChunk = from == 0;
        if (!s.Table.TryAppend(s.Tokens.Skip(from).Take(take).ToArray())) return null;
        if (firstChunk && s.Table.CachedTokenCount > 0)
        {
            s.Computed = s.Table.CachedTokenCount; // those keys and values are already in the cache
            Interlocked.Add(ref prefixHitTokens, s.Table.CachedTokenCount);
        }
        int start = s.Computed;
        int count = s.Table.TokenCount - start;
        budget -= count;
        return (s, start, count);
    }

    /// <summary>Frees a sequence's blocks and puts it back at the front of the queue; it will recompute prompt and output so far.</summary>
    private void Preempt(Sequence s)
    {
        running.Remove(s);
        s.Table.Release();
        s.Computed = 0;
        s.Preemptions++;
        Interlocked.Increment(ref preemptions);
        waiting.AddFirst(s);
        Interlocked.Increment(ref waitingCount);
    }

    /// <summary>Runs the step's rows as one batch and returns the last-position logits of rows that need a next token.</summary>
    private Dictionary<Sequence, Tensor> Execute(StepPlan plan)
    {
        int width = plan.Rows.Max(r => r.Count);
        var input = new long[plan.Rows.Count * width];
        var pagedRows = new PagedRow[plan.Rows.Count];
        for (int b = 0; b < plan.Rows.Count; b++)
        {
            var (s, start, count) = plan.Rows[b];
            for (int i = 0; i < count; i++) input[b * width + i] = s.Tokens[start + i];
            pagedRows[b] = new PagedRow(s.Table, start, count);
        }
        var result = new Dictionary<Sequence, Tensor>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        if (model.IsEncoderDecoder)
            foreach (var (s, _, _) in plan.Rows.Where(r => r.Sequence.Memory is null))
            {
                s.Memory = model.Encode(tensor(s.Request.Prompt.Select(t => (long)t).ToArray(), int64, device).unsqueeze(0)).DetachFromDisposeScope(); // (1, S): once per request
                Interlocked.Increment(ref encoderRuns);
            }
        var context = new PagedAttentionContext(pagedRows, store, width, device,
            model.IsEncoderDecoder ? [.. plan.Rows.Select(r => r.Sequence.Memory!)] : null);
        var tokens = tensor(input, [plan.Rows.Count, width], int64, device);                   // (B, T)
        var logits = plan.Rows.Any(r => r.Sequence.ImagePositions(r.Start, r.Count) > 0)
            ? ForwardWithImages(plan, tokens, width, context)                                    // (B, T, V)
            : model.Forward(tokens, context);                                                    // (B, T, V)
        for (int b = 0; b < plan.Rows.Count; b++)
        {
            var (s, start, count) = plan.Rows[b];
            s.Computed = start + count;
            if (s.Computed == s.Tokens.Count) result[s] = logits[b, count - 1].cpu().DetachFromDisposeScope(); // (V)
        }
        return result;
    }

    /// <summary>
    /// The step's forward pass when some rows' chunks reach image placeholders: each such request's images are encoded
    /// once (kept across preemption), and the placeholder positions of every row's chunk take their soft tokens.
    /// </summary>
    private Tensor ForwardWithImages(StepPlan plan, Tensor tokens, int width, PagedAttentionContext context)
    {
        var mask = new bool[plan.Rows.Count * width];
        var soft = new List<Tensor>();
        for (int b = 0; b < plan.Rows.Count; b++)
        {
            var (s, start, count) = plan.Rows[b];
            int n = s.ImagePositions(start, count);
            if (n == 0) continue;
            if (s.SoftTokens is null)
            {
                var spec = model.ImageInput!;
                var pixels = tensor(s.Request.Images.SelectMany(i => i).ToArray(), [s.Request.Images.Count, spec.ImageSize, spec.ImageSize], float32, device);
                var encoded = model.EncodeImages(pixels);                                      // (M, K, D)
                s.SoftTokens = encoded.reshape(-1, encoded.shape[2]).DetachFromDisposeScope(); // (M·K, D): once per request
            }
            soft.Add(s.SoftTokens.narrow(0, s.PlaceholdersBefore![start], n));             // (n, D)
            for (int i = 0; i < count && start + i < s.Request.Prompt.Count; i++)
                mask[b * width + i] = s.Request.Prompt[start + i] == model.ImageInput!.PlaceholderId;
        }
        return model.Forward(tokens, cat(soft, 0), tensor(mask, [plan.Rows.Count, width], device: device), context); // (B, T, V)
    }

    /// <summary>Samples the next token of every sequence that needs one, streams it and retires finished sequences.</summary>
    private void Update(StepPlan plan, Dictionary<Sequence, Tensor> logits)
    {
        foreach (var (s, start, count) in plan.Rows)
        {
            if (!logits.TryGetValue(s, out var row)) continue;
            using (row)
            {
                var (token, logProb) = s.Sampler.Next(row);
                // Counted at the first sampled token, once: a sequence preempted mid-prompt (chunked prefill)
                // samples its first token only after it was preempted, so "no preemption yet" cannot be the test.
                if (!s.PromptCounted)
                {
                    s.PromptCounted = true;
                    Interlocked.Add(ref promptTokens, s.Request.Prompt.Count);
                }
                s.Tokens.Add(token);
                var update = s.Output.Accept(token, logProb);
                if (update is not null && update.Tokens.Count > 0) Interlocked.Add(ref generatedTokens, update.Tokens.Count);
                if (s.Output.Finished is not null) Retire(s, null, update);
                else if (update is not null) s.Updates.Writer.TryWrite(update);
            }
        }
    }

    /// <summary>Removes a running sequence, frees its blocks and ends its stream (with a last update or an error).</summary>
    private void Retire(Sequence s, Exception? error, GenerationUpdate? last = null)
    {
        running.Remove(s);
        s.Table.Release();
        s.Sampler.Dispose();
        s.Memory?.Dispose();
        s.Memory = null;
        s.SoftTokens?.Dispose();
        s.SoftTokens = null;
        if (error is not null) s.Updates.Writer.TryComplete(error);
        else Finish(s, last);
    }

    private static void Finish(Sequence s, GenerationUpdate? last)
    {
        if (last is not null) s.Updates.Writer.TryWrite(last);
        s.Updates.Writer.TryComplete();
    }

    private void PublishCounts()
    {
        Volatile.Write(ref runningCount, running.Count);
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

    /// <summary>This step's work: for each row, the sequence, the position of its first new token and their count.</summary>
    private sealed record StepPlan(IReadOnlyList<(Sequence Sequence, int Start, int Count)> Rows);

    /// <summary>A request inside the engine.</summary>
    private sealed class Sequence(GenerationRequest request, RequestOutput output, RequestSampler sampler, BlockTable table, int[] decoderPrefix)
    {
        private int cancelled;

        public GenerationRequest Request { get; } = request;
        public RequestOutput Output { get; } = output;
        public RequestSampler Sampler { get; } = sampler;
        public BlockTable Table { get; } = table;
        /// <summary>The decoder's tokens: the prompt (decoder-only) or the start token (encoder-decoder), then the output.</summary>
        public List<int> Tokens { get; } = [.. decoderPrefix];

        /// <summary>An encoder-decoder request's cross-attention keys and values, from its first step to its end (kept across preemption).</summary>
        public EncoderMemory? Memory { get; set; }

        /// <summary>A request's images as soft tokens, (M·K, D), from the first step that reaches them to its end (kept across preemption).</summary>
        public Tensor? SoftTokens { get; set; }

        /// <summary>How many image placeholder ids precede each prompt position (length prompt + 1); null without images.</summary>
        public int[]? PlaceholdersBefore { get; init; }

        /// <summary>Image placeholder ids among the tokens [start, start + count) (only the prompt's count).</summary>
        public int ImagePositions(int start, int count)
        {
            if (PlaceholdersBefore is not { } before) return 0;
            int end = Math.Min(start + count, before.Length - 1);
            return start >= end ? 0 : before[end] - before[start];
        }
        public int Computed { get; set; }
        public int Preemptions { get; set; }
        /// <summary>Whether the prompt's tokens were added to the engine's prompt-token total.</summary>
        public bool PromptCounted { get; set; }
        public Channel<GenerationUpdate> Updates { get; } = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        public bool IsCancelled => Volatile.Read(ref cancelled) == 1;

        public void Cancel(SemaphoreSlim wake)
        {
            if (Interlocked.Exchange(ref cancelled, 1) == 0 && !Updates.Reader.Completion.IsCompleted) wake.Release();
        }
    }
}
