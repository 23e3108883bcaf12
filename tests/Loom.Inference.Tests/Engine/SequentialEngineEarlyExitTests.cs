using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

public class SequentialEngineEarlyExitTests
{
    /// <summary>Bytes, but the worker's decode of the request's second token waits until the test opens the gate.</summary>
    private sealed class GatedVocabulary : IVocabulary
    {
        private readonly ByteVocabulary bytes = new();
        private int decodes;

        private readonly TaskCompletionSource held = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ManualResetEventSlim Gate { get; } = new();

        /// <summary>Completes once the worker is blocked in the decode of the second token.</summary>
        public Task Held => held.Task;

        public string Name => bytes.Name;

        public int Size => bytes.Size;

        public int EosId => bytes.EosId;

        public int PadId => bytes.PadId;

        public int[] Encode(string text) => bytes.Encode(text);

        public string Decode(ReadOnlySpan<int> ids)
        {
            // Decode 1 is the prompt (RequestOutput's constructor), 2 the first token, 3 the second.
            if (Interlocked.Increment(ref decodes) == 3)
            {
                held.TrySetResult();
                if (!Gate.Wait(Eventually.DefaultLimit)) throw new TimeoutException("the test never opened the gate");
            }
            return bytes.Decode(ids);
        }
    }

    [Fact]
    public async Task ACallerThatStopsReadingStopsItsRequestBeforeTheNextRuns()
    {
        using var generator = new Generator(5);
        using var model = new DecoderLm(new DecoderLmOptions
        {
            VocabSize = 258, ModelDim = 32, NumLayers = 1, NumHeads = 2, NumKvHeads = 1, HeadDim = 16, MlpDim = 64, MaxSequenceLength = 512,
        }, generator: generator);
        var vocabulary = new GatedVocabulary();
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var greedy = new SamplingOptions { Temperature = 0, MaxTokens = 400, StopAtEos = false };

        // Leave after the first token without cancelling: disposing the enumerator must stop the
        // worker, and must not return (passing the turn on) while the worker is still in the model.
        var updates = engine.GenerateAsync(new GenerationRequest([1, 2, 3], greedy)).GetAsyncEnumerator();
        Assert.True(await updates.MoveNextAsync());
        // Leave only once the worker is inside the second token: leaving earlier would stop it before the gate.
        await Eventually.For(vocabulary.Held, "the worker reaches the second token");
        var disposing = updates.DisposeAsync().AsTask();
        Assert.False(disposing.IsCompleted);           // the worker is held inside its second token
        vocabulary.Gate.Set();
        await disposing;
        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(2, engine.Stats.GeneratedTokensTotal); // it stopped right after the held token

        await foreach (var update in engine.GenerateAsync(new GenerationRequest([4, 5], greedy with { MaxTokens = 5 })))
        {
        }
        Assert.Equal(2 + 5, engine.Stats.GeneratedTokensTotal);
    }
}
