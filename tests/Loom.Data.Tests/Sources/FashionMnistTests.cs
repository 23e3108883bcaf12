using System.Buffers.Binary;
using System.IO.Compression;
using Loom.Data.Sources;
using Xunit.Abstractions;

namespace Loom.Data.Tests.Sources;

public class FashionMnistTests(ITestOutputHelper output)
{
    private static byte[] Gzip(byte[] bytes)
    {
        using var result = new MemoryStream();
        using (var gzip = new GZipStream(result, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(bytes);
        return result.ToArray();
    }

    private static byte[] Idx(int magic, int[] sizes, byte[] body)
    {
        byte[] bytes = new byte[4 * (1 + sizes.Length) + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        for (int i = 0; i < sizes.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 * (i + 1)), sizes[i]);
        body.CopyTo(bytes, 4 * (1 + sizes.Length));
        return bytes;
    }

    [Fact]
    public void ReadsSyntheticIdxImagesAndLabels()
    {
        using var dir = new TempDirectory();
        byte[] pixels = [.. Enumerable.Range(0, 3 * 2 * 4).Select(i => (byte)i)];
        string images = dir.WriteBytes("i.gz", Gzip(Idx(2051, [3, 2, 4], pixels)));
        string labels = dir.WriteBytes("l.gz", Gzip(Idx(2049, [3], [9, 0, 4])));
        var (rows, columns, read) = FashionMnist.ReadImages(images);
        Assert.Equal((2, 4), (rows, columns));
        Assert.Equal(3, read.Length);
        Assert.Equal(pixels[8..16], read[1]);
        Assert.Equal([9, 0, 4], FashionMnist.ReadLabels(labels));
    }

    [Fact]
    public void WrongMagicAndTruncationNameTheFile()
    {
        using var dir = new TempDirectory();
        string labelsAsImages = dir.WriteBytes("labels.gz", Gzip(Idx(2049, [3], [1, 2, 3])));
        var magic = Assert.Throws<InvalidDataException>(() => FashionMnist.ReadImages(labelsAsImages));
        Assert.Equal("labels.gz: magic number 2049 is not 2051, so this is not an IDX file of images (idx3)", magic.Message);
        string truncated = dir.WriteBytes("short.gz", Gzip(Idx(2051, [2, 28, 28], new byte[784 + 10])));
        Assert.Contains("short.gz: ends before image 2 of 2", Assert.Throws<InvalidDataException>(() => FashionMnist.ReadImages(truncated)).Message);
        string notGzip = dir.Write("plain.gz", "not gzip at all");
        Assert.Throws<InvalidDataException>(() => FashionMnist.ReadLabels(notGzip));
    }

    [SkippableFact]
    public void LoadsTheRealImagesThenReadsTheCache()
    {
        using var root = new TempDirectory();
        var lines = new ProgressLines();
        ImageDataset data;
        try
        {
            data = FashionMnist.Load(root.Path, lines);
        }
        catch (CorpusUnavailableException e)
        {
            output.WriteLine(e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains("Fashion-MNIST", e.Message);
            Requires.Missing($"Fashion-MNIST could not be fetched: {e.Message}");
            return;
        }
        finally
        {
            lines.All.ForEach(output.WriteLine);
        }
        Assert.Equal((28, 28), (data.Rows, data.Columns));
        Assert.Equal((55_000, 5_000, 10_000), (data.Train.Count, data.Validation.Count, data.Test.Count));
        Assert.All(data.Train.Take(100), i => Assert.Equal(784, i.Pixels.Length));
        // The first training image of Fashion-MNIST is an ankle boot, the first test image too.
        Assert.Equal("Ankle boot", data.ClassNames[data.Train[0].Label]);
        Assert.Equal(9, data.Test[0].Label);
        // The test set is balanced: 1,000 images per class.
        Assert.All(data.Test.GroupBy(i => i.Label), g => Assert.Equal(1_000, g.Count()));
        Assert.Contains(lines.All, l => l.Contains("cached 4 IDX files", StringComparison.Ordinal));

        var cacheLines = new ProgressLines();
        var again = FashionMnist.Load(root.Path, cacheLines);
        Assert.Equal(data.Validation[^1].Pixels, again.Validation[^1].Pixels);
        Assert.Equal(["fashion_mnist: reading cache " + Path.Combine(root.Path, "fashion_mnist")], cacheLines.All);
    }
}
