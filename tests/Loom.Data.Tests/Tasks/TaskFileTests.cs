using Loom.Core;
using Loom.Data;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public sealed class TaskFileTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-taskfile-");

    private string dir => temp.Path;

    public void Dispose() => temp.Dispose();

    private string Write(string name, string text) => temp.Write(name, text);

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

    [Fact]
    public void FolderRegistersTasksAndMixturesInDependencyOrder()
    {
        File.WriteAllText(Path.Combine(dir, "a.txt"), "alpha alpha alpha");
        File.WriteAllText(Path.Combine(dir, "b.txt"), "beta");
        string data = Directory.CreateDirectory(Path.Combine(dir, "data")).FullName;
        File.Move(Path.Combine(dir, "a.txt"), Path.Combine(data, "a.txt"));
        File.Move(Path.Combine(dir, "b.txt"), Path.Combine(data, "b.txt"));
        // "all" (read first, alphabetically) names "pair", which names the tasks: registration waits for them.
        Write("0_all.json", """{ "name": "all", "components": [ { "name": "pair", "rate": 1 }, { "name": "later", "rate": 1 } ] }""");
        Write("1_pair.json", """{ "name": "pair", "rate_by": "examples", "maximum_examples": 5, "components": [ { "name": "docs" }, { "name": "later" } ] }""");
        Write("2_docs.json", """{ "name": "docs", "source": { "type": "text", "path": "data", "validation_fraction": 0.5 } }""");
        Write("3_later.json", """{ "name": "later", "source": { "type": "text", "path": "not-there-yet" } }""");
        var registry = TaskFile.AddFolder(new TaskRegistry(), dir, new ByteVocabulary());
        Assert.Equal(["docs", "later"], registry.TaskNames);
        Assert.Equal(["all", "pair"], registry.MixtureNames);
        Assert.Equal(MixtureRateKind.Examples, registry.GetMixture("pair").RateBy);
        Assert.Equal(["docs", "later"], registry.TasksOf("all"));
        // A task whose data is missing registers, and fails with its path only when read.
        var e = Assert.Throws<ConfigException>(() => registry.GetTask("later").GetDataset("train").ToList());
        Assert.Contains("not-there-yet", e.Message);
    }

    [Fact]
    public void BadMixtureFilesNameTheProblem()
    {
        Write("m.json", """{ "name": "m", "components": [ { "name": "ghost", "rate": 1 } ] }""");
        var unknown = Assert.Throws<ConfigException>(() => TaskFile.AddFolder(new TaskRegistry(), dir, new ByteVocabulary()));
        Assert.Contains("m.json", unknown.Message);
        Assert.Contains("ghost", unknown.Message);
        File.Delete(Path.Combine(dir, "m.json"));
        Write("both.json", """{ "name": "both", "source": { "path": "." }, "components": [] }""");
        Assert.Contains("either", Assert.Throws<ConfigException>(() => TaskFile.AddFolder(new TaskRegistry(), dir, new ByteVocabulary())).Message);
        File.Delete(Path.Combine(dir, "both.json"));
        Write("rate.json", """{ "name": "r", "components": [ { "name": "x", "rate": -1 } ] }""");
        Assert.Contains("positive", Assert.Throws<ConfigException>(() => TaskFile.AddFolder(new TaskRegistry(), dir, new ByteVocabulary())).Message);
        Assert.Contains("mixture", Assert.Throws<ConfigException>(() => TaskFile.Load(Write("mix.json", """{ "name": "q", "components": [ { "name": "x" } ] }"""), new ByteVocabulary())).Message);
    }
}
