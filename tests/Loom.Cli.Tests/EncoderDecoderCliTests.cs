using System.Globalization;
using System.Text;
using Loom.Data;
using Loom.Inference;
using Loom.Models;
using Loom.Models.T5;

namespace Loom.Cli.Tests;

/// <summary><c>loom generate</c> on a T5 checkpoint, and a checkpoint whose weights are another family's.</summary>
public sealed class EncoderDecoderCliTests : IDisposable
{
    private const string Prompt = "translate: it is a truth";

    private static readonly ByteVocabulary Bytes = new();

    private readonly TempDirectory temp = new("loom-t5-cli-");

    public void Dispose() => temp.Dispose();

    private static T5Options Options => TinyModels.T5(Bytes.Size, 64);

    /// <summary>Saves a tiny random T5 (seed 41) as a checkpoint folder and returns the folder.</summary>
    private string SaveT5(string name)
    {
        string checkpoint = temp.File(name);
        Directory.CreateDirectory(checkpoint);
        using var model = Seeded.Model(Options, 41);
        ModelCheckpoint.Save(checkpoint, model, new ModelManifest { Model = Options, Vocabulary = "byte" });
        return checkpoint;
    }

    private static T5Model SameModel() => Seeded.Model(Options, 41);

    [Fact]
    public void GreedyGenerationPrintsTheDecodingOfThePromptAlone()
    {
        string checkpoint = SaveT5("t5");
        var run = CliRunner.Run(temp.Path, "generate", "--checkpoint", checkpoint, "--prompt", Prompt, "-n", "12", "-t", "0", "--device", "cpu");
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);

        using var model = SameModel();
        var tokens = new TextGenerator(model, Bytes.EosId, Bytes.PadId).GenerateWithoutCache(Bytes.Encode(Prompt), new SamplingOptions { Temperature = 0, MaxTokens = 12 }).ToList();
        Assert.NotEmpty(tokens);
        // The answer alone: an encoder-decoder's output does not continue (or repeat) its prompt.
        Assert.Equal(Bytes.Decode([.. tokens]) + Environment.NewLine, run.Stdout);
    }

    [Fact]
    public void BeamSearchPrintsTheBestBeamsOfTheEncodedPrompt()
    {
        string checkpoint = SaveT5("t5");
        var run = CliRunner.Run(temp.Path, "generate", "--checkpoint", checkpoint, "--prompt", Prompt, "-n", "6", "--beams", "3", "--device", "cpu");
        Assert.True(run.ExitCode == 0, run.Stderr + run.Stdout);

        using var model = SameModel();
        var hypotheses = new BeamSearch(model, Bytes.EosId, Bytes.PadId).Search(Bytes.Encode(Prompt), new BeamSearchOptions { Beams = 3, MaxTokens = 6 });
        Assert.Equal(3, hypotheses.Count);
        var expected = new StringBuilder();
        foreach (var (h, rank) in hypotheses.Select((h, i) => (h, i + 1)))
            expected.Append(CultureInfo.InvariantCulture, $"#{rank} (log p {h.LogProb:F3}, {h.Tokens.Count} tokens, {(h.FinishReason == FinishReason.Stop ? "eos" : "length")}): {Bytes.Decode([.. h.Tokens])}").Append(Environment.NewLine);
        Assert.Equal(expected.ToString(), run.Stdout);
    }

    [Fact]
    public void WeightsOfAnotherFamilyThanTheManifestSaysAreAOneLineError()
    {
        string t5 = SaveT5("t5");
        string checkpoint = temp.File("decoder");
        Directory.CreateDirectory(checkpoint);
        var options = TinyModels.Decoder();
        using (var model = Seeded.Model(options, 5))
            ModelCheckpoint.Save(checkpoint, model, new ModelManifest { Model = options, Vocabulary = "byte" });
        // model.json says decoder_lm; model.safetensors (metadata loom_architecture = t5) holds the T5's weights.
        File.Copy(Path.Combine(t5, ModelCheckpoint.WeightsFile), Path.Combine(checkpoint, ModelCheckpoint.WeightsFile), overwrite: true);

        var run = CliRunner.Run(temp.Path, "generate", "--checkpoint", checkpoint, "--prompt", "hi", "-n", "2", "--device", "cpu");
        Assert.Equal(1, run.ExitCode);
        string error = run.Stderr.Trim();
        Assert.Single(error.Split('\n'));
        Assert.StartsWith("loom: error:", error);
        Assert.Contains("holds the weights of a t5 model", error);
        Assert.Contains("decoder_lm", error);
        Assert.DoesNotContain("   at ", run.Stderr + run.Stdout); // no stack trace
        Assert.Equal("", run.Stdout);
    }
}
