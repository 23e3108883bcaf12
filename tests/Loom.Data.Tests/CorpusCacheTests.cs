namespace Loom.Data.Tests;

public class CorpusCacheTests
{
    private static readonly CachedDocument[] Documents =
    [
        new("first", CachedDocument.TrainSplit, "One\nline £ 😀"),
        new("second", CachedDocument.ValidationSplit, "Two"),
    ];

    [Fact]
    public void RoundTripsDocumentsInOrder()
    {
        using var root = new TempDirectory();
        string dir = Path.Combine(root.Path, "corpus");
        CorpusCache.Write(dir, "test", "unit test", Documents);
        var read = CorpusCache.TryRead(dir, "test", out string? problem);
        Assert.Null(problem);
        Assert.Equal(Documents, read);
        Assert.True(File.Exists(Path.Combine(dir, "first.txt")));
        Assert.Equal(["corpus"], Directory.GetFileSystemEntries(root.Path).Select(Path.GetFileName)); // no temp folders left
    }

    [Fact]
    public void AbsentCacheIsNotAProblem()
    {
        using var root = new TempDirectory();
        Assert.Null(CorpusCache.TryRead(Path.Combine(root.Path, "none"), "test", out string? problem));
        Assert.Null(problem);
    }

    [Fact]
    public void DamagedOrForeignCacheIsRejected()
    {
        using var root = new TempDirectory();
        string dir = Path.Combine(root.Path, "corpus");
        CorpusCache.Write(dir, "test", "unit test", Documents);

        Assert.Null(CorpusCache.TryRead(dir, "other", out string? foreign));
        Assert.Contains("other", foreign);

        File.WriteAllText(Path.Combine(dir, "second.txt"), "Tw"); // as if a write had stopped half-way
        Assert.Null(CorpusCache.TryRead(dir, "test", out string? damaged));
        Assert.Contains("second.txt", damaged);

        File.Delete(Path.Combine(dir, "first.txt"));
        Assert.Null(CorpusCache.TryRead(dir, "test", out string? missing));
        Assert.Contains("first.txt", missing);
    }

    [Fact]
    public void RewriteReplacesTheWholeFolder()
    {
        using var root = new TempDirectory();
        string dir = Path.Combine(root.Path, "corpus");
        CorpusCache.Write(dir, "test", "unit test", Documents);
        File.WriteAllText(Path.Combine(dir, "stray.txt"), "left from before");
        CachedDocument[] replacement = [new("only", CachedDocument.TrainSplit, "new")];
        CorpusCache.Write(dir, "test", "unit test", replacement);
        Assert.Equal(replacement, CorpusCache.TryRead(dir, "test", out _));
        Assert.False(File.Exists(Path.Combine(dir, "stray.txt")));
        Assert.Single(Directory.GetFileSystemEntries(root.Path));
    }
}
