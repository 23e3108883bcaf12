using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models.Reformer;

namespace Loom.Inference.Tests.Engine;

public class ReformerEngineTests
{
    private static readonly ByteVocabulary Bytes = new();

    [Fact]
    public async Task TheEngineDecodesAReformerAsTheNoCacheReferenceDoes()
    {
        // Full shared-QK attention: what the engine's cached decoding computes, so greedy tokens must agree exactly.
        var options = new ReformerOptions
        {
            VocabSize = 258, ModelDim = 16, NumLayers = 2, NumHeads = 2, HeadDim = 8, MlpDim = 32, MaxSequenceLength = 64,
            Attention = ReformerAttentionKind.Full, FfChunkLength = 8, OutputChunkLength = 8,
        };
        using var generator = Seeded.Generator(21);
        using var model = options.Build(generator: generator);
        model.eval();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "reformer", new EngineOptions { BlockSize = 4, TokenBudget = 24, MaxRunning = 4 });
        var random = new Random(22);
        var requests = Enumerable.Range(0, 4).Select(_ => new GenerationRequest([.. Enumerable.Range(0, random.Next(1, 20)).Select(_ => random.Next(0, 256))],
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 10), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(async r =>
        {
            var tokens = new List<int>();
            await foreach (var update in engine.GenerateAsync(r)) tokens.AddRange(update.Tokens);
            return tokens;
        }));
        var reference = new TextGenerator(model, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        await Eventually.UntilAsync(() => engine.Stats.Running == 0 && engine.Stats.Waiting == 0, "the engine has no running or waiting request");
    }
}
