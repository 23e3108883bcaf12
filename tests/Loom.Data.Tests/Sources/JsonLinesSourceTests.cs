using Loom.Data.Sources;

namespace Loom.Data.Tests.Sources;

public class JsonLinesSourceTests
{
    private static JsonLinesSource Source(string path, ErrorPolicy onError = ErrorPolicy.Fail, params string[] fields) =>
        new(new JsonLinesSourceOptions { Path = path, Fields = fields.Length == 0 ? ["text"] : fields, OnError = onError });

    [Fact]
    public void ReadsSelectedFieldsWithRenameAndNesting()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("a.jsonl", """
            {"text": "hello", "label": "greeting", "meta": {"title": "T1"}, "n": 3}

            {"label": "farewell", "text": "bye \u00e9", "meta": {"title": "T2"}}
            """);
        var source = new JsonLinesSource(new JsonLinesSourceOptions
        {
            Path = file,
            Fields = ["text", "label", "meta.title"],
            Rename = new Dictionary<string, string> { ["text"] = "inputs", ["meta.title"] = "title" },
        });
        var examples = source.ToList();
        Assert.Equal(2, examples.Count);
        Assert.Equal(new Dictionary<string, string> { ["inputs"] = "hello", ["label"] = "greeting", ["title"] = "T1" }, examples[0]);
        Assert.Equal("bye é", examples[1]["inputs"]);
        Assert.Equal(new SourceStats(2, 0, null), source.Stats);
        // A second pass reads the file again and resets the counts.
        Assert.Equal(examples, source.ToList());
        Assert.Equal(2, source.Stats.Examples);
    }

    [Fact]
    public void AKeyWithADotWinsOverNesting()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("a.jsonl", "{\"a.b\": \"flat\", \"a\": {\"b\": \"nested\"}}\n{\"a\": {\"b\": \"only nested\"}}\n");
        Assert.Equal(["flat", "only nested"], Source(file, ErrorPolicy.Fail, "a.b").Select(e => e["a.b"]));
    }

    [Fact]
    public void ReadsAFolderInPathOrderSkippingOtherFiles()
    {
        using var dir = new TempDirectory();
        dir.Write("b/2.jsonl", "{\"text\": \"third\"}\n");
        dir.Write("a.ndjson", "{\"text\": \"first\"}\n{\"text\": \"second\"}");
        dir.Write("notes.txt", "not json");
        var source = Source(dir.Path);
        Assert.Equal(2, source.Files.Count);
        Assert.Equal(["first", "second", "third"], source.Select(e => e["text"]));
    }

    [Fact]
    public void LinesLongerThanTheReadBufferSurvive()
    {
        using var dir = new TempDirectory();
        string big = new('x', 200_000);
        string file = dir.Write("big.jsonl", $"{{\"text\": \"{big}\"}}\r\n{{\"text\": \"tail\"}}\r\n");
        Assert.Equal([big, "tail"], Source(file).Select(e => e["text"]));
    }

    [Theory]
    [InlineData("{\"text\": \"ok\"}\n{\"text\": oops}\n", 2, "not valid JSON")]
    [InlineData("{\"text\": \"ok\"}\n{\"body\": \"x\", \"id\": \"7\"}\n", 2, "has no field 'text' (fields here: body, id)")]
    [InlineData("{\"text\": 42}\n", 1, "field 'text' is a JSON number, not a string")]
    [InlineData("\n\n[\"text\"]\n", 3, "is a JSON array, not an object")]
    [InlineData("{\"text\": \"ok\"", 1, "not valid JSON")]
    public void MalformedLinesNameFileAndLine(string content, int line, string what)
    {
        using var dir = new TempDirectory();
        string file = dir.Write("data.jsonl", content);
        var e = Assert.Throws<DataFormatException>(() => Source(file).ToList());
        Assert.StartsWith($"{file}:{line}: ", e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains("on_error to skip", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(file, e.File);
        Assert.Equal(line, e.Line);
    }

    [Fact]
    public void InvalidUtf8IsReportedOnItsLine()
    {
        using var dir = new TempDirectory();
        byte[] bytes = [.. "{\"text\": \"a\"}\n{\"text\": \""u8.ToArray(), 0xFF, 0xFE, .. "\"}\n{\"text\": \"c\"}\n"u8.ToArray()];
        string file = dir.WriteBytes("bad.jsonl", bytes);
        var e = Assert.Throws<DataFormatException>(() => Source(file).ToList());
        Assert.StartsWith($"{file}:2: field 'text' is not valid UTF-8", e.Message);
        var skipping = Source(file, ErrorPolicy.Skip);
        Assert.Equal(["a", "c"], skipping.Select(x => x["text"]));
        Assert.Equal(1, skipping.SkippedCount);
    }

    [Fact]
    public void SkipPolicySkipsAndCountsEveryKindOfBadLine()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("mixed.jsonl", string.Join('\n',
            "{\"text\": \"one\"}",
            "{not json",
            "{\"other\": \"x\"}",
            "{\"text\": null}",
            "7",
            "{\"text\": \"two\"}"));
        var source = Source(file, ErrorPolicy.Skip);
        Assert.Equal(["one", "two"], source.Select(e => e["text"]));
        Assert.Equal(4, source.SkippedCount);
        Assert.Equal(2, source.Stats.Examples);
        Assert.StartsWith($"{file}:2: not valid JSON", source.Stats.FirstProblem);
    }

    [Fact]
    public void OptionsAndPathsAreCheckedUpFront()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("a.jsonl", "{}\n");
        Assert.Throws<ArgumentException>(() => new JsonLinesSourceOptions { Path = " ", Fields = ["text"] });
        Assert.Throws<ArgumentException>(() => new JsonLinesSourceOptions { Path = file, Fields = [] });
        Assert.Throws<ArgumentException>(() => new JsonLinesSource(new JsonLinesSourceOptions { Path = file, Fields = ["a", "a"] }));
        var rename = Assert.Throws<ArgumentException>(() => new JsonLinesSource(new JsonLinesSourceOptions { Path = file, Fields = ["a"], Rename = new Dictionary<string, string> { ["b"] = "c" } }));
        Assert.Contains("'b'", rename.Message);
        Assert.Throws<ArgumentException>(() => new JsonLinesSource(new JsonLinesSourceOptions { Path = file, Fields = ["a", "b"], Rename = new Dictionary<string, string> { ["a"] = "b" } }));
        var missing = Assert.Throws<FileNotFoundException>(() => Source(Path.Combine(dir.Path, "nope.jsonl")));
        Assert.Contains("nope.jsonl", missing.Message);
        var empty = Directory.CreateDirectory(Path.Combine(dir.Path, "empty")).FullName;
        Assert.Contains("no .jsonl or .ndjson files", Assert.Throws<FileNotFoundException>(() => Source(empty)).Message);
    }
}
