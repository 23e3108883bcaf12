using System.Text.Json.Nodes;

namespace Loom.Cli.Tests;

public sealed class InferCommandTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-infer-");

    public void Dispose() => temp.Dispose();

    private static void AssertOneLineError(CliRunner.Result r, string expected)
    {
        Assert.Equal(1, r.ExitCode);
        string err = r.Stderr.Trim();
        Assert.StartsWith("loom: error:", err);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr + r.Stdout);
    }

    [Fact]
    public void InferWritesOneJsonLinePerExampleAndRefusesBadInput()
    {
        string dir = temp.Path;
        string data = Path.Combine(dir, "docs.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => $"{{\"text\": \"document {i}: it is a truth universally acknowledged\"}}"));
        string taskFile = Path.Combine(dir, "docs.json");
        File.WriteAllText(taskFile, """{ "name": "docs", "source": { "type": "jsonl", "path": "docs.jsonl", "validation_fraction": 0.25 } }""");
        string run = Path.Combine(dir, "run");
        var train = CliRunner.Run(dir, "train", "--task", taskFile, "--run-dir", run, "--device", "cpu",
            "--set", "training.steps=2", "--set", "model.model_dim=32", "--set", "model.num_layers=1", "--set", "model.mlp_dim=64",
            "--set", "model.head_dim=16", "--set", "model.num_heads=2", "--set", "data.sequence_length=64", "--set", "training.batch_size=2",
            "--set", "training.eval_batches=1");
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);

        string output = Path.Combine(dir, "out.jsonl");
        var infer = CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", taskFile, "--split", "validation", "--output", output,
            "--examples", "3", "--batch-size", "2", "--device", "cpu");
        Assert.True(infer.ExitCode == 0, infer.Stderr + infer.Stdout);
        Assert.Contains("wrote 3 examples of docs/validation", infer.Stdout);
        var lines = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal([0, 1, 2], lines.Select(l => l["index"]!.GetValue<int>()));
        Assert.All(lines, l => Assert.True(l["score"]!.GetValue<double>() < 0));
        Assert.All(lines, l => Assert.StartsWith("document ", l["targets"]!.GetValue<string>()));

        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", "nope", "--output", output), "unknown task 'nope'");
        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", taskFile, "--split", "test", "--output", output), "no split 'test'");
        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", taskFile, "--output", Path.Combine(dir, "missing", "out.jsonl")), "cannot write");
        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", taskFile), "--output FILE is required");
        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", taskFile, "--output", output, "--examples", "0"), "--examples = 0");
        Assert.Equal(3, File.ReadAllLines(output).Length); // failed runs left the earlier output alone
        AssertOneLineError(CliRunner.Run(dir, "infer", "--checkpoint", run, "--task", "austen_span_corruption", "--output", output),
            "data.vocabulary=byte+extra_ids=100");
    }
}
