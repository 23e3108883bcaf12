using Loom.Data.Images;
using Loom.Data.Sources;
using static TorchSharp.torch;

namespace Loom.Data.Tests.Images;

public class ImageBatcherTests
{
    /// <summary>Synthetic 2×3 images whose first pixel is their index (mod 256) and whose label is index mod 10.</summary>
    private static List<LabeledImage> Synthetic(int count) =>
        [.. Enumerable.Range(0, count).Select(i => new LabeledImage([(byte)(i % 256), 0, 255, 1, 2, 3], i % 10))];

    [Fact]
    public void SameSeedStepAndRankGiveTheSameBatch()
    {
        var images = Synthetic(50);
        var a = new ImageBatcher(images, 2, 3, batchSize: 4, seed: 7, rank: 1, worldSize: 2);
        var b = new ImageBatcher(images, 2, 3, batchSize: 4, seed: 7, rank: 1, worldSize: 2);
        using var scope = NewDisposeScope();
        foreach (long step in new long[] { 0, 5, 13, 1000 })
        {
            using var x = a.GetBatch(step);
            using var y = b.GetBatch(step);
            Assert.True(x[FeatureNames.ImagePixels].equal(y[FeatureNames.ImagePixels]).all().item<bool>());
            Assert.True(x.Targets.equal(y.Targets).all().item<bool>());
        }
        // Another seed orders the epoch differently; made out of order, a batch is still the same.
        var other = new ImageBatcher(images, 2, 3, batchSize: 4, seed: 8, rank: 1, worldSize: 2);
        Assert.NotEqual(Enumerable.Range(0, 4).Select(i => a.ImageAt(0, i)), Enumerable.Range(0, 4).Select(i => other.ImageAt(0, i)));
        Assert.Equal(a.ImageAt(3, 2), new ImageBatcher(images, 2, 3, 4, 7, 1, 2).ImageAt(3, 2));
    }

    [Fact]
    public void RanksAreDisjointAndCoverEveryEpochExactly()
    {
        // 48 images, 3 ranks of 4: an epoch is 4 global steps, and each later epoch is shuffled anew.
        var images = Synthetic(48);
        var ranks = Enumerable.Range(0, 3).Select(r => new ImageBatcher(images, 2, 3, 4, seed: 3, r, 3)).ToList();
        var epochs = new List<int[]>();
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var seen = new List<int>();
            for (long step = epoch * 4; step < (epoch + 1) * 4; step++)
                foreach (var rank in ranks)
                    for (int i = 0; i < 4; i++) seen.Add(rank.ImageAt(step, i));
            Assert.Equal(Enumerable.Range(0, 48), seen.Order());
            epochs.Add([.. seen]);
        }
        Assert.NotEqual(epochs[0], epochs[1]);
    }

    [Fact]
    public void PixelsAreNormalizedAndLabelsAreClassIds()
    {
        var images = Synthetic(3);
        var batcher = new ImageBatcher(images, 2, 3, batchSize: 3, seed: 1, mean: 0.5, std: 0.25);
        using var scope = NewDisposeScope();
        using var batch = batcher.MakeBatch([2, 0]);
        var x = batch[FeatureNames.ImagePixels];
        Assert.Equal(new long[] { 2, 1, 2, 3 }, x.shape);
        Assert.Equal(ScalarType.Float32, x.dtype);
        Assert.Equal((255 / 255.0 - 0.5) / 0.25, x[0, 0, 0, 2].item<float>(), 5);
        Assert.Equal((2 / 255.0 - 0.5) / 0.25, x[0, 0, 0, 0].item<float>(), 5);
        Assert.Equal(new long[] { 2, 0 }, batch.Targets.view(-1).data<long>().ToArray());
        Assert.Equal(new long[] { 2, 1 }, batch.Targets.shape);
    }

    [Fact]
    public void EvaluationBatchesCoverTheSplitInOrder()
    {
        var batcher = new ImageBatcher(Synthetic(10), 2, 3, batchSize: 4, seed: 1);
        var labels = batcher.EvaluationBatches().SelectMany(b => { using (b) return b.Targets.view(-1).data<long>().ToArray(); }).ToList();
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)(i % 10)), labels);
        Assert.Equal(2, batcher.EvaluationBatches(7).Count());
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        Assert.Contains("has 6 pixels, not 3x3", Assert.Throws<ArgumentException>(() => new ImageBatcher(Synthetic(2), 3, 3, 1, 1)).Message);
        Assert.Contains("rank 2 must be in [0, 2)", Assert.Throws<ArgumentException>(() => new ImageBatcher(Synthetic(2), 2, 3, 1, 1, 2, 2)).Message);
        Assert.Contains("no images", Assert.Throws<ArgumentException>(() => new ImageBatcher([], 2, 3, 1, 1)).Message);
    }
}
