using Loom.Core;
using Loom.Data;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public sealed class TaskFileTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("loom-taskfile-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void JsonLinesTaskFileBecomesAnLmTaskWithAHeldOutTail()
    {
        Write("docs.jsonl", string.Join('\n', Enumerable.Range(0, 10).Select(i => $$"""{"text": "document {{i}}", "id": {{i}}}""")) + "\n{not json}\n");
        string file = Write("task.json", """
            // comments allowed
            { "name": "docs", "source": { "type": "jsonl", "path": "docs.jsonl", "validation_fraction": 0.2, "on_error": "skip" } }
            """);
        var task = TaskFile.Load(file, new ByteVocabulary());
        Assert.Equal("docs", task.Name);
        var train = task.GetDataset("train").ToList();
        var validation = task.GetDataset("validation").ToList();
        Assert.Equal(8, train.Count);
        Assert.Equal(new[] { "document 8", "document 9" }, validation.Select(e => e.Text("targets")));
        Assert.Equal(ByteVocabulary.Eos, train[0].Tokens["targets"][^1]);
        Assert.Same(task.GetType(), TaskRegistry.Find(new TaskRegistry(), file, new ByteVocabulary()).GetType());
    }

    [Fact]
    public void BadTaskFilesNameTheProblem()
    {
        Assert.Contains("nope.json", Assert.Throws<ConfigException>(() => TaskFile.Load(Path.Combine(dir, "nope.json"), new ByteVocabulary())).Message);
        string unknownKey = Write("a.json", """{ "name": "a", "sauce": {} }""");
        Assert.Contains("sauce", Assert.Throws<ConfigException>(() => TaskFile.Load(unknownKey, new ByteVocabulary())).Message);
        string missing = Write("b.json", """{ "name": "b", "source": { "type": "text", "path": "missing-folder" } }""");
        Assert.Contains("missing-folder", Assert.Throws<ConfigException>(() => TaskFile.Load(missing, new ByteVocabulary())).Message);
        string badType = Write("c.json", """{ "name": "c", "source": { "type": "csv", "path": "." } }""");
        Assert.Contains("c.json", Assert.Throws<ConfigException>(() => TaskFile.Load(badType, new ByteVocabulary())).Message);
    }
}
