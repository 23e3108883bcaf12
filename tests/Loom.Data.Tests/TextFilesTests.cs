namespace Loom.Data.Tests;

public class TextFilesTests
{
    [Fact]
    public void MissingPathNamesItAndSaysWhatToPass()
    {
        string path = Path.Combine(Path.GetTempPath(), "loom-missing-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<FileNotFoundException>(() => TextFiles.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("--data", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void FolderGivesOneDocumentPerTextFileInPathOrder()
    {
        using var dir = new TempDirectory();
        dir.Write("b.txt", "bee");
        dir.Write("a.md", "# a");
        dir.Write("sub/c.txt", "sea");
        dir.Write("notes", "no extension, still text");
        dir.WriteBytes("image.png", [0x89, 0x50, 0x4E, 0x47, 0x00, 0x01]);   // NUL byte: binary
        dir.WriteBytes("latin1.txt", [0x63, 0x61, 0x66, 0xE9]);             // not UTF-8
        dir.Write(".git/config", "[core]");                                  // hidden folder
        dir.Write("empty.txt", "");
        dir.WriteBytes("bom.txt", [0xEF, 0xBB, 0xBF, (byte)'d']);

        var corpus = TextFiles.Load(dir.Path, validationFraction: 0);
        Assert.Equal(Path.GetFileName(dir.Path), corpus.Name);
        Assert.Equal(["# a", "bee", "d", "no extension, still text", "sea"], corpus.Train);
        Assert.Empty(corpus.Validation);
    }

    [Theory]
    [InlineData(10, 0.1, 1)]
    [InlineData(10, 0.25, 3)] // 2.5 rounds away from zero
    [InlineData(5, 0.1, 1)]   // at least one document is held out
    [InlineData(2, 0.9, 1)]   // at least one stays for training
    [InlineData(4, 0.5, 2)]
    public void FolderHoldsOutTheLastDocuments(int files, double fraction, int held)
    {
        using var dir = new TempDirectory();
        for (int i = 0; i < files; i++) dir.Write($"doc{i:D2}.txt", $"document {i}");
        var corpus = TextFiles.Load(dir.Path, fraction);
        Assert.Equal(files - held, corpus.Train.Count);
        Assert.Equal([.. Enumerable.Range(files - held, held).Select(i => $"document {i}")], corpus.Validation);
    }

    [Fact]
    public void SingleFileIsCutAtTheNearestLineBoundary()
    {
        using var dir = new TempDirectory();
        // Ten lines of ten characters (with newline): 10% held out is exactly the last line.
        string text = string.Concat(Enumerable.Range(0, 10).Select(i => $"line {i:D3}.\n"));
        Assert.Equal(100, text.Length);
        string file = dir.Write("book.txt", text);
        var corpus = TextFiles.Load(file, 0.1);
        Assert.Equal("book.txt", corpus.Name);
        Assert.Equal(text[..90], Assert.Single(corpus.Train));
        Assert.Equal("line 009.\n", Assert.Single(corpus.Validation));

        // 13% targets index 87, nearer the boundary at 90 than the one at 80.
        var c13 = TextFiles.Load(file, 0.13);
        Assert.Equal(text[..90], Assert.Single(c13.Train));
        // 17% targets index 83, nearer 80.
        var c17 = TextFiles.Load(file, 0.17);
        Assert.Equal(text[..80], Assert.Single(c17.Train));
        Assert.Equal(text[80..], Assert.Single(c17.Validation));
    }

    [Fact]
    public void SingleLineIsCutMidTextWithoutSplittingSurrogates()
    {
        using var dir = new TempDirectory();
        string text = string.Concat(Enumerable.Repeat("😀", 10)); // 20 UTF-16 units, no newline
        var corpus = TextFiles.Load(dir.Write("emoji.txt", text), 0.15); // target 17 is inside a pair
        string train = Assert.Single(corpus.Train);
        string validation = Assert.Single(corpus.Validation);
        Assert.Equal(text, train + validation);
        Assert.Equal(16, train.Length);
    }

    [Fact]
    public void BinaryFileAndEmptyFolderAreRefused()
    {
        using var dir = new TempDirectory();
        string binary = dir.WriteBytes("data.bin", [1, 2, 0, 3]);
        var e = Assert.Throws<InvalidDataException>(() => TextFiles.Load(binary));
        Assert.Contains(binary, e.Message);
        File.Delete(binary);
        Assert.Throws<InvalidDataException>(() => TextFiles.Load(dir.Path));
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    [InlineData(double.NaN)]
    public void FractionOutsideRangeIsRefused(double fraction)
    {
        using var dir = new TempDirectory();
        string file = dir.Write("a.txt", "text");
        Assert.Throws<ArgumentOutOfRangeException>(() => TextFiles.Load(file, fraction));
    }
}
