using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Cli.Tests;

/// <summary><c>loom generate</c> and <c>loom serve</c> with --speculative and --draft.</summary>
public sealed class SpeculativeCliTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-speculative-");

    public void Dispose() => temp.Dispose();

    private string SaveTinyCheckpoint(string name, int layers, long seed)
    {
        string checkpoint = Path.Combine(temp.Path, name, "checkpoints", "step_00000001");
        Directory.CreateDirectory(checkpoint);
        var options = new DecoderLmOptions { VocabSize = 258, ModelDim = 32, NumLayers = layers, NumHeads = 2, NumKvHeads = 1, HeadDim = 16, MlpDim = 64, MaxSequenceLength = 128, SharedEmbeddings = false };
        using var generator = new Generator((ulong)seed);
        using var model = new DecoderLm(options, generator: generator);
        ModelCheckpoint.Save(checkpoint, model, new ModelManifest { Model = options, Vocabulary = "byte", Step = 1 });
        return checkpoint;
    }

    [Fact]
    public void GreedyGenerationPrintsTheSameTextSpeculativelyAndReportsTheAcceptance()
    {
        string target = SaveTinyCheckpoint("target", 2, 3), draft = SaveTinyCheckpoint("draft", 1, 4);
        string[] common = ["generate", "--checkpoint", target, "--prompt", "la la la", "-n", "24", "-t", "0", "--ignore-eos", "--device", "cpu"];
        var plain = CliRunner.Run(temp.Path, common);
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        foreach (string[] extra in new[] { new[] { "--speculative", "ngram" }, new[] { "--draft", draft, "--speculative-tokens", "3" } })
        {
            var speculative = CliRunner.Run(temp.Path, [.. common, .. extra]);
            Assert.True(speculative.ExitCode == 0, speculative.Stderr);
            Assert.Equal(plain.Stdout, speculative.Stdout);
            Assert.Matches(@"loom: speculative \(.*\): \d+ of \d+ draft tokens accepted", speculative.Stderr);
        }
    }

    [Fact]
    public void SpeculativeOptionsThatCannotWorkAreOneLineErrors()
    {
        string target = SaveTinyCheckpoint("target", 1, 3);
        var batching = CliRunner.Run(temp.Path, "serve", "--checkpoint", target, "--engine", "batching", "--speculative", "ngram");
        Assert.NotEqual(0, batching.ExitCode);
        Assert.Contains("--engine sequential", batching.Stderr + batching.Stdout);
        var noDraft = CliRunner.Run(temp.Path, "generate", "--checkpoint", target, "--speculative", "draft");
        Assert.NotEqual(0, noDraft.ExitCode);
        Assert.Contains("--draft CHECKPOINT", noDraft.Stderr + noDraft.Stdout);
        Assert.DoesNotContain("   at ", batching.Stderr + noDraft.Stderr);
    }
}
