using Loom.Data.Sources;
using Parquet;
using Parquet.Schema;

namespace Loom.Data.Tests.Sources;

public class ParquetSourceTests
{
    private static readonly DataField<string> Text = new("text", true);
    private static readonly DataField<string> Label = new("label", true);
    private static readonly DataField<int> Id = new("id");

    /// <summary>Writes one row group per element of <paramref name="groups"/> with Parquet.Net itself.</summary>
    private static string Write(TempDirectory dir, string name, params (string?[] Text, string?[] Label)[] groups)
    {
        string path = Path.Combine(dir.Path, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var stream = File.Create(path);
        var writer = ParquetWriter.CreateAsync(new ParquetSchema(Text, Label, Id), stream).GetAwaiter().GetResult();
        int id = 0;
        foreach (var (text, label) in groups)
        {
            using var group = writer.CreateRowGroup();
            group.WriteAsync(Text, text!).GetAwaiter().GetResult();
            group.WriteAsync(Label, label!).GetAwaiter().GetResult();
            int[] ids = [.. text.Select(_ => id++)];
            group.WriteAsync<int>(Id, ids.AsMemory()).GetAwaiter().GetResult();
        }
        writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return path;
    }

    private static ParquetSource Source(string path, ErrorPolicy onError = ErrorPolicy.Fail, params string[] columns) =>
        new(new ParquetSourceOptions { Path = path, Columns = columns.Length == 0 ? ["text"] : columns, OnError = onError });

    [Fact]
    public void StreamsSelectedColumnsAcrossRowGroupsWithRename()
    {
        using var dir = new TempDirectory();
        string file = Write(dir, "a.parquet", (["one", "two"], ["x", "y"]), (["three"], ["z"]));
        var source = new ParquetSource(new ParquetSourceOptions { Path = file, Columns = ["text", "label"], Rename = new Dictionary<string, string> { ["label"] = "targets" } });
        var examples = source.ToList();
        Assert.Equal(["one", "two", "three"], examples.Select(e => e["text"]));
        Assert.Equal(["x", "y", "z"], examples.Select(e => e["targets"]));
        Assert.Equal(new SourceStats(3, 0, null), source.Stats);
    }

    [Fact]
    public void ReadsAFolderInPathOrder()
    {
        using var dir = new TempDirectory();
        Write(dir, "b/2.parquet", (["c"], ["l"]));
        Write(dir, "a.parquet", (["a", "b"], ["l", "l"]));
        dir.Write("readme.txt", "not parquet");
        Assert.Equal(["a", "b", "c"], Source(dir.Path).Select(e => e["text"]));
    }

    [Fact]
    public void MissingColumnNamesItAndTheAvailableOnes()
    {
        using var dir = new TempDirectory();
        string file = Write(dir, "a.parquet", (["a"], ["l"]));
        // Skip does not excuse a selection mistake.
        var e = Assert.Throws<DataFormatException>(() => Source(file, ErrorPolicy.Skip, "body").ToList());
        Assert.Equal($"{file}: has no column 'body' (columns: text, label, id); select one of those", e.Message);
        var typed = Assert.Throws<DataFormatException>(() => Source(file, ErrorPolicy.Fail, "id").ToList());
        Assert.Contains("column 'id' holds Int32, not strings", typed.Message);
    }

    [Fact]
    public void NullValuesFailWithTheRowOrAreSkippedAndCounted()
    {
        using var dir = new TempDirectory();
        string file = Write(dir, "a.parquet", (["a", null], ["l", "m"]), (["c", "d"], [null, "n"]));
        var e = Assert.Throws<DataFormatException>(() => Source(file, ErrorPolicy.Fail, "text", "label").ToList());
        Assert.StartsWith($"{file}: row 2: column 'text' is null", e.Message);
        var skipping = Source(file, ErrorPolicy.Skip, "text", "label");
        Assert.Equal(["a", "d"], skipping.Select(x => x["text"]));
        Assert.Equal(2, skipping.SkippedCount);
        Assert.Contains("row 2", skipping.Stats.FirstProblem);
    }

    [Fact]
    public void CorruptFilesNameTheFileOrAreSkipped()
    {
        using var dir = new TempDirectory();
        string good = Write(dir, "a.parquet", (["fine"], ["l"]));
        byte[] bytes = File.ReadAllBytes(good);
        string garbage = dir.Write("b.parquet", "this is not a parquet file at all");
        string truncated = dir.WriteBytes("c.parquet", bytes[..(bytes.Length / 2)]);

        foreach (string bad in new[] { garbage, truncated })
        {
            var e = Assert.Throws<DataFormatException>(() => Source(bad).ToList());
            Assert.StartsWith($"{bad}: ", e.Message);
            Assert.Contains("not a readable Parquet file", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        var skipping = Source(dir.Path, ErrorPolicy.Skip);
        Assert.Equal(["fine"], skipping.Select(x => x["text"]));
        Assert.Equal(2, skipping.SkippedCount);
        Assert.StartsWith(garbage, skipping.Stats.FirstProblem);
    }
}
