using Loom.Data;
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
/// </remarks>
public sealed class ModelRunner
{
    private readonly LanguageModel model;
    private readonly IVocabulary vocabulary;
    private readonly PagedKvStore store;
    private readonly Device device;
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
        int width = plan.Rows.Max(r => r.Count);
        var input = new long[plan.Rows.Count * width];
        var pagedRows = new PagedRow[plan.Rows.Count];
        for (int b = 0; b < plan.Rows.Count; b++)
        {
            var (s, start, count) = plan.Rows[b];
            for (int i = 0; i < count; i++) input[b * width + i] = s.Tokens[start + i];
            pagedRows[b] = new PagedRow(s.Table, start, count);
        }
        if (model.IsEncoderDecoder)
            foreach (var row in plan.Rows.Where(r => r.Sequence.Memory is null))
            {
                var s = row.Sequence;
                using var encoderScope = NewDisposeScope();
                s.Memory = model.Encode(tensor(s.Request.Prompt.Select(t => (long)t).ToArray(), int64, device).unsqueeze(0)).DetachFromDisposeScope(); // (1, S): once per request
                Interlocked.Increment(ref encoderRuns);
            }
        var context = new PagedAttentionContext(pagedRows, store, width, device,
            model.IsEncoderDecoder ? [.. plan.Rows.Select(r => r.Sequence.Memory!)] : null);
        var tokens = tensor(input, [plan.Rows.Count, width], int64, device);                   // (B, T)
        return plan.Rows.Any(r => r.Sequence.ImagePositions(r.Start, r.Count) > 0)
            ? ForwardWithImages(plan, tokens, width, context)                                    // (B, T, V)
            : model.Forward(tokens, context);                                                    // (B, T, V)
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
