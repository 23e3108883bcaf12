using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Checkpoints written before model options were tagged by architecture still load and decode the same.</summary>
public class OldCheckpointTests
{
    private static string Fixture => Path.Combine(RepositoryRoot.Find(), "tests", "Loom.Models.Tests", "Fixtures", "old-decoder-checkpoint");

    [Fact]
    public void TheFixtureIsInTheOldFormat()
    {
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture, ModelCheckpoint.ManifestFile)))!.AsObject();
        Assert.Equal(ModelArchitectures.DecoderLm, manifest["architecture"]!.GetValue<string>());
        Assert.Null(manifest["model"]![ModelArchitectures.Key]);
    }

    [Fact]
    public void OldDecoderCheckpointLoadsAndGreedyDecodingGivesTheRecordedTokens()
    {
        using var scope = NewDisposeScope();
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture, "expected-greedy.json")))!.AsObject();
        int[] prompt = [.. expected["prompt"]!.AsArray().Select(n => n!.GetValue<int>())];
        int[] tokens = [.. expected["tokens"]!.AsArray().Select(n => n!.GetValue<int>())];
        double[] logits = [.. expected["last_logits_first_8"]!.AsArray().Select(n => n!.GetValue<double>())];

        var (model, manifest) = ModelCheckpoint.Load(Fixture, CPU, expectedArchitecture: ModelArchitectures.DecoderLm);
        using (model)
        {
            Assert.Equal(ModelArchitectures.DecoderLm, manifest.Model.Architecture);
            Assert.Equal("byte", manifest.Vocabulary);
            Assert.Equal(258, manifest.Model.VocabSize);
            Assert.Null(Assert.IsType<DecoderLmOptions>(model.Options).Moe);
            model.eval();
            float[] actual;
            using (no_grad()) actual = model.Forward(tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0), null)[0, -1, ..8].data<float>().ToArray();
            for (int i = 0; i < logits.Length; i++) Assert.Equal(logits[i], actual[i], 1e-4);
            var settings = new DecodeSettings(expected["max_tokens"]!.GetValue<int>(), expected["eos_id"]!.GetValue<int>(), expected["start_id"]!.GetValue<int>());
            var decoded = ReferenceDecoder.DecodeOne(model, prompt, settings);
            Assert.Equal(tokens, decoded.Tokens);
            Assert.Equal(expected["finished"]!.GetValue<bool>(), decoded.Finished);
        }
    }
}
