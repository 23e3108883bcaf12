using Loom.Data.Tasks;
using TorchSharp;

namespace Loom.Data.ImageText;

/// <summary>
/// Batches of image + text examples, one example per row, each batch a pure function of (seed, step, rank): the
/// trainer's data path for <see cref="FeatureConverters.FeatureLayout.ImageText"/> models.
/// </summary>
/// <remarks>
/// Row b of step k on rank r is global sample g = (k · B + b) · W + r: epoch g / N, and within it the example at
/// position g mod N of that epoch's permutation (Fisher-Yates from a counter-based generator keyed by seed and epoch).
/// A row is <c>inputs ++ targets</c> shifted by one (decoder inputs and targets), loss on the targets only, padded
/// with the pad id; the example's image goes to <see cref="FeatureNames.ImagePixels"/> as (B, 1, H, W) in [0, 1].
/// </remarks>
public sealed class ImageTextBatches : ITrainingBatches
{
    private readonly IReadOnlyList<Example> examples;
    private readonly ulong seed;
    private readonly int rank, worldSize, padId, height, width;
    private readonly bool shuffle;
    private (long Epoch, int[] Order)? permutation;

    /// <summary>Creates the batches.</summary>
    /// <param name="examples">Tokenized examples with "inputs", "targets" and <see cref="ImagePrompts.ImageFeature"/> tokens.</param>
    /// <param name="padId">The id that pads rows.</param>
    /// <param name="sequenceLength">L: tokens per row.</param>
    /// <param name="batchSize">B: rows per batch on this rank.</param>
    /// <param name="height">Image height in pixels.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="seed">The seed of the order.</param>
    /// <param name="rank">This data-parallel rank.</param>
    /// <param name="worldSize">The number of data-parallel ranks.</param>
    /// <param name="shuffle">False: the examples in their order (held-out batches).</param>
    /// <exception cref="ArgumentException">No examples, or an example without the features or with inputs that do not fit a row.</exception>
    public ImageTextBatches(IReadOnlyList<Example> examples, int padId, int sequenceLength, int batchSize, int height, int width,
        ulong seed, int rank = 0, int worldSize = 1, bool shuffle = true)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("there are no image + text examples to batch", nameof(examples));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequenceLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        for (int i = 0; i < examples.Count; i++)
        {
            var t = examples[i].Tokens;
            if (!t.TryGetValue("inputs", out var inputs) || !t.TryGetValue("targets", out _) || !t.TryGetValue(ImagePrompts.ImageFeature, out var image))
                throw new ArgumentException($"example {i} needs \"inputs\", \"targets\" and \"{ImagePrompts.ImageFeature}\" tokens (it has: {string.Join(", ", t.Keys)})");
            if (inputs.Length >= sequenceLength)
                throw new ArgumentException($"example {i}'s inputs hold {inputs.Length} tokens, which leave no room for targets in data.sequence_length = {sequenceLength}: raise it");
            if (image.Length != height * width)
                throw new ArgumentException($"example {i}'s image has {image.Length} pixels, not {height}x{width}");
        }
        this.examples = examples;
        this.padId = padId;
        this.height = height;
        this.width = width;
        this.seed = seed;
        this.rank = rank;
        this.worldSize = worldSize;
        this.shuffle = shuffle;
        SequenceLength = sequenceLength;
        BatchSize = batchSize;
    }

    /// <inheritdoc />
    public int BatchSize { get; }

    /// <inheritdoc />
    public int SequenceLength { get; }

    /// <summary>The examples batched.</summary>
    public int Count => examples.Count;

    /// <summary>The example index of row <paramref name="index"/> of the batch for <paramref name="step"/>.</summary>
    public int ExampleAt(long step, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        long g = checked((step * BatchSize + index) * worldSize + rank);
        long epoch = g / examples.Count;
        int within = (int)(g % examples.Count);
        return shuffle ? Order(epoch)[within] : within;
    }

    /// <inheritdoc />
    public FeatureBatch GetBatch(long step)
    {
        int b = BatchSize, l = SequenceLength;
        var inputs = new long[b * l];
        var targets = new long[b * l];
        var weights = new float[b * l];
        var pixels = new float[b * height * width];
        Array.Fill(inputs, padId);
        Array.Fill(targets, padId);
        for (int row = 0; row < b; row++)
        {
            var e = examples[ExampleAt(step, row)].Tokens;
            int[] prompt = e["inputs"], answer = e["targets"];
            int n = Math.Min(prompt.Length + answer.Length, l + 1); // targets lose tokens from the end
            int At(int i) => i < prompt.Length ? prompt[i] : answer[i - prompt.Length];
            for (int i = 0; i < n - 1; i++)
            {
                inputs[row * l + i] = At(i);
                targets[row * l + i] = At(i + 1);
                weights[row * l + i] = i + 1 >= prompt.Length ? 1 : 0;
            }
            var image = e[ImagePrompts.ImageFeature];
            for (int p = 0; p < image.Length; p++) pixels[row * image.Length + p] = image[p] / 255f;
        }
        using var scope = torch.NewDisposeScope();
        return new FeatureBatch(new Dictionary<string, torch.Tensor>
        {
            [FeatureNames.DecoderInputTokens] = torch.tensor(inputs, [b, l], torch.int64),
            [FeatureNames.DecoderTargetTokens] = torch.tensor(targets, [b, l], torch.int64),
            [FeatureNames.DecoderLossWeights] = torch.tensor(weights, [b, l], torch.float32),
            [FeatureNames.ImagePixels] = torch.tensor(pixels, [b, 1, height, width], torch.float32),
        }).MoveToOuterDisposeScope();
    }

    /// <summary>The held-out batches: the first <paramref name="maxBatches"/> batches of the examples in order (the last may repeat the first examples).</summary>
    public IEnumerable<FeatureBatch> EvaluationBatches(int maxBatches)
    {
        long batches = Math.Min(maxBatches, (examples.Count + BatchSize - 1) / BatchSize);
        for (long step = 0; step < batches; step++) yield return GetBatch(step);
    }

    /// <summary>Epoch <paramref name="epoch"/>'s order of the examples: Fisher-Yates from (seed, epoch), cached for the current epoch.</summary>
    private int[] Order(long epoch)
    {
        if (permutation is { } p && p.Epoch == epoch) return p.Order;
        var order = Enumerable.Range(0, examples.Count).ToArray();
        ulong key = CounterRng.Key(seed, 0x696D6774 /* "imgt" */, (ulong)epoch);
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = (int)CounterRng.Below(key, (ulong)i, (ulong)i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        permutation = (epoch, order);
        return order;
    }
}
