using System.Buffers.Binary;
using System.IO.Compression;

namespace Loom.Data.Sources;

/// <summary>One greyscale image and its class.</summary>
/// <param name="Pixels">Row-major pixels, 0 (background) to 255, <c>rows × columns</c> of them.</param>
/// <param name="Label">The class index into the dataset's <see cref="ImageDataset.ClassNames"/>.</param>
public sealed record LabeledImage(byte[] Pixels, int Label);

/// <summary>An image-classification dataset with fixed train, validation and test splits.</summary>
/// <param name="Name">A short name for logs, such as <c>fashion_mnist</c>.</param>
/// <param name="Rows">The height of every image in pixels.</param>
/// <param name="Columns">The width of every image in pixels.</param>
/// <param name="ClassNames">The name of each class index.</param>
/// <param name="Train">The training images, in the source's order.</param>
/// <param name="Validation">The validation images, in the source's order.</param>
/// <param name="Test">The test images, in the source's order.</param>
public sealed record ImageDataset(
    string Name,
    int Rows,
    int Columns,
    IReadOnlyList<string> ClassNames,
    IReadOnlyList<LabeledImage> Train,
    IReadOnlyList<LabeledImage> Validation,
    IReadOnlyList<LabeledImage> Test);

/// <summary>
/// Zalando's Fashion-MNIST (MIT): 28×28 greyscale images of clothing in 10 classes, from the Debian
/// package <c>dataset-fashion-mnist</c>. The 60,000 training images are split into 55,000 for training
/// and the last 5,000 for validation; the 10,000 test images are the test split.
/// </summary>
/// <remarks>
/// The first load downloads the package with <c>apt-get download</c> (no root needed) and caches its
/// four gzipped IDX files under <c>{cache root}/fashion_mnist</c>; later loads read only the cache. A
/// cached file that does not decode (gzip checks its CRC) is fetched again.
/// </remarks>
public static class FashionMnist
{
    /// <summary>The dataset name, also the name of its cache folder.</summary>
    public const string Name = "fashion_mnist";

    /// <summary>The Debian package that carries the files.</summary>
    public const string PackageName = "dataset-fashion-mnist";

    /// <summary>How many training images, taken from the end of the training file, form the validation split.</summary>
    public const int ValidationCount = 5_000;

    /// <summary>The class names, by label index.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private const string DataFolder = "usr/share/datasets/fashion-mnist/";
    private const string TrainImages = "train-images-idx3-ubyte.gz";
    private const string TrainLabels = "train-labels-idx1-ubyte.gz";
    private const string TestImages = "t10k-images-idx3-ubyte.gz";
    private const string TestLabels = "t10k-labels-idx1-ubyte.gz";
    private static readonly string[] Files = [TrainImages, TrainLabels, TestImages, TestLabels];

    /// <summary>Loads the dataset from the cache, fetching and caching it first if needed.</summary>
    /// <param name="cacheRoot">The cache root, or null for <c>$XDG_CACHE_HOME/loom</c> or <c>~/.cache/loom</c>.</param>
    /// <param name="progress">Receives one line per step (cache hit, download, decode), or null.</param>
    /// <returns>55,000 training, 5,000 validation and 10,000 test images.</returns>
    /// <exception cref="CorpusUnavailableException">The package could not be fetched or decoded.</exception>
    public static ImageDataset Load(string? cacheRoot = null, IProgress<string>? progress = null)
    {
        string directory = Path.Combine(DataCache.ResolveRoot(cacheRoot), Name);
        if (Files.All(f => File.Exists(Path.Combine(directory, f))))
        {
            try
            {
                progress?.Report($"{Name}: reading cache {directory}");
                return Decode(directory);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                progress?.Report($"{Name}: cache {directory} is unusable ({e.Message.ReplaceLineEndings(" ")}); fetching again");
            }
        }

        var work = Directory.CreateTempSubdirectory("loom-fashion-mnist-");
        try
        {
            string deb = DebianPackages.Download(PackageName, work.FullName, progress is null ? null : new Prefixed(progress));
            progress?.Report($"{Name}: unpacking {Path.GetFileName(deb)}");
            var files = DebianPackages.ReadFiles(deb, [.. Files.Select(f => DataFolder + f)]);
            string staged = Directory.CreateDirectory(Path.Combine(work.FullName, "staged")).FullName;
            foreach (string f in Files) File.WriteAllBytes(Path.Combine(staged, f), files[DataFolder + f]);
            var dataset = Decode(staged);
            Cache(staged, directory, progress);
            return dataset;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new CorpusUnavailableException(
                $"Fashion-MNIST could not be fetched ({e.Message.ReplaceLineEndings(" ")}); install or download Debian's {PackageName} where its mirror is reachable, then retry", e);
        }
        finally
        {
            try { work.Delete(recursive: true); }
            catch (IOException) { } // a leftover temp folder is harmless and the OS cleans it
        }
    }

    /// <summary>Copies the checked files into the cache beside the target, then renames the folder into place.</summary>
    private static void Cache(string staged, string directory, IProgress<string>? progress)
    {
        string parent = Path.GetDirectoryName(directory)!;
        string temp = Path.Combine(parent, $".{Name}.tmp-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(temp);
            foreach (string f in Files) File.Copy(Path.Combine(staged, f), Path.Combine(temp, f));
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            Directory.Move(temp, directory);
            progress?.Report($"{Name}: cached {Files.Length} IDX files in {directory}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The images are already decoded; a read-only cache only costs a fetch next time.
            progress?.Report($"{Name}: could not write the cache {directory} ({e.Message.ReplaceLineEndings(" ")}); it will be fetched again next time");
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    private static ImageDataset Decode(string directory)
    {
        var (rows, columns, train) = ReadImages(Path.Combine(directory, TrainImages));
        var trainLabels = ReadLabels(Path.Combine(directory, TrainLabels));
        var (testRows, testColumns, test) = ReadImages(Path.Combine(directory, TestImages));
        var testLabels = ReadLabels(Path.Combine(directory, TestLabels));
        if ((testRows, testColumns) != (rows, columns))
            throw new InvalidDataException($"{TestImages}: images are {testRows}x{testColumns} but the training images are {rows}x{columns}");
        var trainSet = Pair(TrainImages, train, trainLabels);
        var testSet = Pair(TestImages, test, testLabels);
        if (trainSet.Count <= ValidationCount)
            throw new InvalidDataException($"{TrainImages}: {trainSet.Count} images leave none for training after {ValidationCount} for validation");
        int keep = trainSet.Count - ValidationCount;
        return new ImageDataset(Name, rows, columns, ClassNames, trainSet.Take(keep).ToArray(), trainSet.Skip(keep).ToArray(), testSet);
    }

    private static List<LabeledImage> Pair(string file, byte[][] images, byte[] labels)
    {
        if (images.Length != labels.Length)
            throw new InvalidDataException($"{file}: {images.Length} images but {labels.Length} labels; the files do not belong together");
        var result = new List<LabeledImage>(images.Length);
        for (int i = 0; i < images.Length; i++)
        {
            if (labels[i] >= ClassNames.Count)
                throw new InvalidDataException($"{file}: label {labels[i]} of image {i + 1} is not a class (0 to {ClassNames.Count - 1})");
            result.Add(new LabeledImage(images[i], labels[i]));
        }
        return result;
    }

    /// <summary>Reads a gzipped IDX image file (magic 2051: count, rows, columns, then the pixels).</summary>
    internal static (int Rows, int Columns, byte[][] Images) ReadImages(string path)
    {
        using var stream = OpenGzip(path);
        int[] header = ReadHeader(stream, path, 2051, 3, "images (idx3)");
        int count = header[0], rows = header[1], columns = header[2];
        if (rows <= 0 || columns <= 0 || rows > 4096 || columns > 4096)
            throw new InvalidDataException($"{Path.GetFileName(path)}: image size {rows}x{columns} is not plausible; the file is damaged");
        var images = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            images[i] = new byte[rows * columns];
            ReadExactly(stream, images[i], path, $"image {i + 1} of {count}");
        }
        return (rows, columns, images);
    }

    /// <summary>Reads a gzipped IDX label file (magic 2049: count, then one byte per label).</summary>
    internal static byte[] ReadLabels(string path)
    {
        using var stream = OpenGzip(path);
        int count = ReadHeader(stream, path, 2049, 1, "labels (idx1)")[0];
        byte[] labels = new byte[count];
        ReadExactly(stream, labels, path, $"{count} labels");
        return labels;
    }

    private static GZipStream OpenGzip(string path) => new(File.OpenRead(path), CompressionMode.Decompress);

    private static int[] ReadHeader(Stream stream, string path, int magic, int dimensions, string kind)
    {
        // The magic number comes first and alone, so a file of the other kind is named as such, not as truncated.
        byte[] header = new byte[4];
        ReadExactly(stream, header, path, "the header");
        int found = BinaryPrimitives.ReadInt32BigEndian(header);
        if (found != magic)
            throw new InvalidDataException($"{Path.GetFileName(path)}: magic number {found} is not {magic}, so this is not an IDX file of {kind}");
        byte[] dims = new byte[4 * dimensions];
        ReadExactly(stream, dims, path, "the header");
        int[] sizes = [.. Enumerable.Range(0, dimensions).Select(i => BinaryPrimitives.ReadInt32BigEndian(dims.AsSpan(4 * i)))];
        if (sizes[0] < 0) throw new InvalidDataException($"{Path.GetFileName(path)}: negative item count {sizes[0]}; the file is damaged");
        return sizes;
    }

    private static void ReadExactly(Stream stream, byte[] buffer, string path, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{Path.GetFileName(path)}: ends before {what}; the file is truncated", e);
        }
    }

    /// <summary>Prefixes the dataset name to the package fetcher's progress lines.</summary>
    private sealed class Prefixed(IProgress<string> inner) : IProgress<string>
    {
        public void Report(string value) => inner.Report($"{Name}: {value}");
    }
}
