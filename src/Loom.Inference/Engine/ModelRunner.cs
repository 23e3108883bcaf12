using Loom.Data;
using Loom.Distributed;
using Loom.Inference.Paging;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// Executes a step's <see cref="SchedulerOutput"/>: builds the (B, T) token batch and the paged attention context over
/// the KV store, runs each encoder-decoder request's encoder and each image request's image encoder once, runs the model,
/// and samples every row that reached the end of what it knows with <see cref="BatchSampler"/>.
/// </summary>
/// <remarks>
/// Called by the engine thread only. <see cref="ComputeLogits"/> is the forward pass alone, so that a caller that needs
/// logits at several positions of a row (speculative decoding verifies several draft tokens at once) can take them.
/// <para>
/// Tensor parallelism: with a model group of several ranks (the model split by heads and MLP units with
/// <see cref="LanguageModel.ShardForTensorParallel"/>), rank 0's runner broadcasts every step's input (token ids, positions,
/// block ids) before its forward pass, and every other rank runs the same pass on its shard in <see cref="ServeWorker"/>,
/// with its own KV store holding its heads. Sampling happens on rank 0 only (the logits are whole on every rank).
/// </para>
/// </remarks>
public sealed class ModelRunner
{
    private readonly LanguageModel model;
    private readonly IVocabulary vocabulary;
    private readonly PagedKvStore store;
    private readonly Device device;
    private readonly ICommunicator? group; // null: one process
    private long encoderRuns;

    /// <summary>Creates the runner of a model over a KV store.</summary>
    /// <param name="model">The model, in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="store">The paged KV store the scheduler's block tables index.</param>
    public ModelRunner(LanguageModel model, IVocabulary vocabulary, PagedKvStore store)
    {
        this.model = model ?? throw new ArgumentNullException(nameof(model));
        this.vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        this.store = store ?? throw new ArgumentNullException(nameof(store));
        device = model.parameters().First().device;
    }

    /// <summary>Creates the runner of one rank of a model group (tensor parallelism).</summary>
    /// <param name="model">This rank's shard of the model (<see cref="LanguageModel.ShardForTensorParallel"/>), in eval mode.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="store">This rank's paged KV store (its heads), with as many blocks as every other rank's.</param>
    /// <param name="modelGroup">The model group; rank 0 schedules and samples, the others call <see cref="ServeWorker"/>.</param>
    /// <exception cref="NotSupportedException">The model is an encoder-decoder or reads images (not split yet).</exception>
    public ModelRunner(LanguageModel model, IVocabulary vocabulary, PagedKvStore store, ICommunicator modelGroup) : this(model, vocabulary, store)
    {
        group = modelGroup ?? throw new ArgumentNullException(nameof(modelGroup));
        if (group.WorldSize > 1 && (model.IsEncoderDecoder || model.ImageInput is not null))
            throw new NotSupportedException("tensor-parallel serving runs decoder-only text models; serve encoder-decoder and image models from one process");
    }

    private bool IsTensorParallel => group is { WorldSize: > 1 };

    /// <summary>Times the encoder ran (once per encoder-decoder request; its memory is kept across preemption).</summary>
    public long EncoderRuns => Interlocked.Read(ref encoderRuns);

    /// <summary>Runs the step and samples a next token for every row that <see cref="ScheduledRow.SamplesNext"/>.</summary>
    /// <exception cref="InvalidOperationException">A row's output constraint allows no token.</exception>
    public ModelRunnerOutput Execute(SchedulerOutput plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = ComputeLogits(plan);                                                   // (B, T, V)
        var rows = new List<int>();
        var last = new List<long>();
        long width = logits.shape[1];
        for (int b = 0; b < plan.Rows.Count; b++)
            if (plan.Rows[b].SamplesNext)
            {
                rows.Add(b);
                last.Add(b * width + plan.Rows[b].Count - 1);
            }
        if (rows.Count == 0) return new ModelRunnerOutput([]);
        var lastLogits = logits.reshape(-1, logits.shape[2]).index_select(0, tensor(last.ToArray(), int64, device)); // (N, V)
        var (tokens, logProbs) = BatchSampler.Sample(lastLogits, [.. rows.Select(b => plan.Rows[b].Sequence.Sampler)], vocabulary);
        return new ModelRunnerOutput([.. rows.Select((b, i) => new SampledToken(b, tokens[i], logProbs[i]))]);
    }

    /// <summary>
    /// The step's forward pass: writes every row's new keys and values into the paged store and returns the logits at
    /// every position, (B, T, V), T the longest row (shorter rows are right-padded; their padding's logits mean nothing).
    /// Call it inside a dispose scope and under no_grad.
    /// </summary>
    public Tensor ComputeLogits(SchedulerOutput plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var input = StepInput.From(plan);
        if (IsTensorParallel)
        {
            if (group!.Rank != 0) throw new InvalidOperationException("only rank 0 of a model group runs steps; the other ranks call ServeWorker");
            input.Broadcast(group, device);
            return Forward(input, null);
        }
        if (model.IsEncoderDecoder)
            foreach (var row in plan.Rows.Where(r => r.Sequence.Memory is null))
            {
                var s = row.Sequence;
                using var encoderScope = NewDisposeScope();
                s.Memory = model.Encode(tensor(s.Request.Prompt.Select(t => (long)t).ToArray(), int64, device).unsqueeze(0)).DetachFromDisposeScope(); // (1, S): once per request
                Interlocked.Increment(ref encoderRuns);
            }
        var memories = model.IsEncoderDecoder ? plan.Rows.Select(r => r.Sequence.Memory!).ToList() : null;
        if (!plan.Rows.Any(r => r.Sequence.ImagePositions(r.Start, r.Count) > 0)) return Forward(input, memories); // (B, T, V)
        var context = new PagedAttentionContext(input.Rows, store, input.Width, device, memories);
        var tokens = tensor(input.Tokens, [input.Rows.Length, input.Width], int64, device);   // (B, T)
        return ForwardWithImages(plan, tokens, input.Width, context);                          // (B, T, V)
    }

    /// <summary>
    /// Runs the steps rank 0's runner broadcasts, on this rank's shard, until rank 0 stops (<see cref="StopWorkers"/>).
    /// Call it on every rank of the model group but 0, on one thread.
    /// </summary>
    /// <exception cref="InvalidOperationException">This runner has no model group, or is its rank 0.</exception>
    public void ServeWorker()
    {
        if (!IsTensorParallel || group!.Rank == 0) throw new InvalidOperationException("ServeWorker runs on the ranks of a model group other than 0");
        while (StepInput.Receive(group, device) is { } input)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Forward(input, null); // the layers' all-reduces pair with rank 0's; the logits stay here
        }
    }

    /// <summary>Tells the other ranks of the model group that no step follows (rank 0, once, when the engine stops).</summary>
    public void StopWorkers()
    {
        if (IsTensorParallel && group!.Rank == 0) StepInput.BroadcastStop(group, device);
    }

    /// <summary>The forward pass of a step's input: (B, T, V).</summary>
    private Tensor Forward(StepInput input, IReadOnlyList<EncoderMemory>? memories)
    {
        var context = new PagedAttentionContext(input.Rows, store, input.Width, device, memories);
        var tokens = tensor(input.Tokens, [input.Rows.Length, input.Width], int64, device);   // (B, T)
        return model.Forward(tokens, context);                                                  // (B, T, V)
    }

    /// <summary>
    /// The step's forward pass when some rows' chunks reach image placeholders: each such request's images are encoded
    /// once (kept across preemption), and the placeholder positions of every row's chunk take their soft tokens.
    /// </summary>
    private Tensor ForwardWithImages(SchedulerOutput plan, Tensor tokens, int width, PagedAttentionContext context)
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
                using var imageScope = NewDisposeScope();
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
}
