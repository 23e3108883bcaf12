using Loom.Data.Sources;
using TorchSharp;

namespace Loom.Data.Images;

/// <summary>
/// Batches of labelled images for an image classifier, a pure function of (seed, step, rank) like the text batchers:
/// training sample <c>s = (step · B + b) · W + rank</c> is image <c>perm_e[s mod N]</c> of epoch <c>e = s / N</c>, where
/// each epoch's permutation is drawn from a counter-based generator keyed by (seed, epoch). Batch k is made without
/// making batches 0..k−1, a resumed run sees the uninterrupted run's batches, the W ranks' batches together form one
/// global batch, and over an epoch the ranks see disjoint images that cover it exactly. Batches may straddle epochs.
/// </summary>
/// <remarks>
/// Pixels become float32 (B, 1, H, W), scaled to [0, 1] and then standardized by <see cref="Mean"/> and
/// <see cref="Std"/> (Fashion-MNIST's training-set statistics by default); class ids are the targets, (B, 1) int64.
/// </remarks>
public sealed class ImageBatcher : ITrainingBatches
{
    private const ulong PermutationPurpose = 0x696D6770; // "imgp"
    private readonly IReadOnlyList<LabeledImage> images;
    private int[]? lastOrder; // memo of the last epoch's permutation; any value is recomputable
    private long lastEpoch = -1;
    private readonly Lock orderLock = new();

    /// <summary>Fashion-MNIST's training-set pixel mean, on the [0, 1] scale.</summary>
    public const double FashionMnistMean = 0.2860;

    /// <summary>Fashion-MNIST's training-set pixel standard deviation, on the [0, 1] scale.</summary>
    public const double FashionMnistStd = 0.3530;

    /// <summary>Creates the batcher over <paramref name="images"/> (greyscale, <paramref name="rows"/>×<paramref name="columns"/> each).</summary>
    /// <param name="images">The split to draw from, in its source's order.</param>
    /// <param name="rows">H, the height of every image.</param>
    /// <param name="columns">W, the width of every image.</param>
    /// <param name="batchSize">B, images per batch on this rank.</param>
    /// <param name="seed">Seeds every epoch's permutation.</param>
    /// <param name="rank">This data-parallel rank, in <c>[0, worldSize)</c>.</param>
    /// <param name="worldSize">The number of data-parallel ranks.</param>
    /// <param name="mean">Pixel mean subtracted after scaling to [0, 1].</param>
    /// <param name="std">Pixel standard deviation divided by, positive.</param>
    /// <exception cref="ArgumentException">No images, an image of the wrong size, or a non-positive size, batch or std; a rank out of range.</exception>
    public ImageBatcher(IReadOnlyList<LabeledImage> images, int rows, int columns, int batchSize, ulong seed, int rank = 0, int worldSize = 1,
        double mean = FashionMnistMean, double std = FashionMnistStd)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new ArgumentException("there are no images to batch", nameof(images));
        if (rows <= 0 || columns <= 0) throw new ArgumentException($"image size {rows}x{columns} must be positive");
        if (batchSize <= 0) throw new ArgumentException($"batch size {batchSize} must be positive", nameof(batchSize));
        if (worldSize <= 0 || (uint)rank >= (uint)worldSize) throw new ArgumentException($"rank {rank} must be in [0, {worldSize})", nameof(rank));
        if (!(std > 0)) throw new ArgumentException($"pixel std {std} must be positive", nameof(std));
        for (int i = 0; i < images.Count; i++)
            if (images[i].Pixels.Length != rows * columns)
                throw new ArgumentException($"image {i} has {images[i].Pixels.Length} pixels, not {rows}x{columns}", nameof(images));
        this.images = images;
        Rows = rows;
        Columns = columns;
        BatchSize = batchSize;
        Seed = seed;
        Rank = rank;
        WorldSize = worldSize;
        Mean = mean;
        Std = std;
    }

    /// <summary>H.</summary>
    public int Rows { get; }

    /// <summary>W.</summary>
    public int Columns { get; }

    /// <inheritdoc />
    public int BatchSize { get; }

    /// <summary>1: an image is one "token" to the trainer (its loss is one class prediction).</summary>
    public int SequenceLength => 1;

    /// <summary>Seeds the epochs' permutations.</summary>
    public ulong Seed { get; }

    /// <summary>This data-parallel rank.</summary>
    public int Rank { get; }

    /// <summary>The number of data-parallel ranks.</summary>
    public int WorldSize { get; }

    /// <summary>Pixel mean (on [0, 1]).</summary>
    public double Mean { get; }

    /// <summary>Pixel standard deviation (on [0, 1]).</summary>
    public double Std { get; }

    /// <summary>N: images per epoch.</summary>
    public int Count => images.Count;

    /// <summary>Which image (index into the split) fills row <paramref name="index"/> of the batch for <paramref name="step"/>.</summary>
    public int ImageAt(long step, int index)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must not be negative");
        if ((uint)index >= (uint)BatchSize) throw new ArgumentOutOfRangeException(nameof(index), index, $"row must be in [0, {BatchSize})");
        long sample = (step * BatchSize + index) * WorldSize + Rank;
        return OrderOf(sample / Count)[(int)(sample % Count)];
    }

    /// <summary>The training batch of <paramref name="step"/> on the CPU: pixels (B, 1, H, W) and class ids (B, 1).</summary>
    public FeatureBatch GetBatch(long step)
    {
        var chosen = new int[BatchSize];
        for (int b = 0; b < BatchSize; b++) chosen[b] = ImageAt(step, b);
        return MakeBatch(chosen);
    }

    /// <summary>
    /// Fixed, ordered batches over the first <paramref name="maxImages"/> images (all of them when null), B per batch,
    /// the last possibly smaller; independent of the seed and the rank (held-out evaluation).
    /// </summary>
    public IEnumerable<FeatureBatch> EvaluationBatches(int? maxImages = null)
    {
        int total = Math.Min(maxImages ?? Count, Count);
        for (int first = 0; first < total; first += BatchSize)
        {
            var chosen = new int[Math.Min(BatchSize, total - first)];
            for (int b = 0; b < chosen.Length; b++) chosen[b] = first + b;
            yield return MakeBatch(chosen);
        }
    }

    /// <summary>The batch of the given images: normalized pixels and class ids, moved to the caller's dispose scope.</summary>
    public FeatureBatch MakeBatch(IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        int pixels = Rows * Columns;
        var values = new float[indices.Count * pixels];
        var labels = new long[indices.Count];
        float scale = (float)(1.0 / (255.0 * Std)), shift = (float)(Mean / Std);
        for (int b = 0; b < indices.Count; b++)
        {
            var image = images[indices[b]];
            for (int p = 0; p < pixels; p++) values[b * pixels + p] = image.Pixels[p] * scale - shift;
            labels[b] = image.Label;
        }
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(values, [indices.Count, 1, Rows, Columns]); // (B, 1, H, W)
        var y = torch.tensor(labels, [indices.Count, 1]);                 // (B, 1)
        return new FeatureBatch(new Dictionary<string, torch.Tensor>
        {
            [FeatureNames.ImagePixels] = x,
            [FeatureNames.DecoderTargetTokens] = y,
        }).MoveToOuterDisposeScope();
    }

    private int[] OrderOf(long epoch)
    {
        lock (orderLock)
        {
            if (lastOrder is null || lastEpoch != epoch)
            {
                lastOrder = Permutation(epoch);
                lastEpoch = epoch;
            }
            return lastOrder;
        }
    }

    /// <summary>Fisher-Yates shuffle of the image indices, each swap drawn from (seed, epoch, position).</summary>
    private int[] Permutation(long epoch)
    {
        ulong key = CounterRng.Key(Seed, PermutationPurpose, (ulong)epoch);
        var order = new int[Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = (int)CounterRng.Below(key, (ulong)i, (ulong)i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
