using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

public class SequentialEngineTests
{
    // Untied embeddings: a random model with tied ones greedily repeats the prompt's last token, which
    // would make greedy text and stop sequences trivial.
    private static DecoderLm TinyModel(IVocabulary vocabulary)
    {
        using var generator = new Generator(7);
        return new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64,
            MaxSequenceLength = 128, SharedEmbeddings = false,
        }, generator: generator);
    }

    [Fact]
    public async Task StoppingTheEnumerationEarlyStopsTheWorkAndFreesTheEngine()
    {
        // The worker passes the prompt's decode and two tokens, then waits at the third.
        using var vocabulary = new GatedVocabulary(PieceVocabulary.Printable(), passingDecodes: 3);
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var request = new GenerationRequest(vocabulary.Encode("Hello"), new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false });

        var updates = engine.GenerateAsync(request).GetAsyncEnumerator();
        Assert.True(await updates.MoveNextAsync());
        Assert.Equal(1, engine.Stats.Running);
        vocabulary.WaitUntilBlocked(); // the worker is decoding the third token
        var disposing = updates.DisposeAsync(); // stops the worker, then waits for it
        vocabulary.Open();
        await disposing;

        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(3, engine.Stats.GeneratedTokensTotal); // not the 100 the request allowed
        var next = new List<GenerationUpdate>();
        await foreach (var update in engine.GenerateAsync(request)) next.Add(update);
        Assert.Equal(FinishReason.Length, next[^1].FinishReason);
        Assert.Equal(103, engine.Stats.GeneratedTokensTotal);
    }
}
