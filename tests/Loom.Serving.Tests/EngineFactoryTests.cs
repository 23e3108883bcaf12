using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Serving.Tests;

public class EngineFactoryTests
{
    [Theory]
    [InlineData("batching", EngineKind.Batching)]
    [InlineData(" Sequential ", EngineKind.Sequential)]
    public void EngineNamesParse(string name, EngineKind kind) => Assert.Equal(kind, ServingEngineOptions.ParseKind(name));

    [Fact]
    public void AnUnknownEngineNameSaysWhatIsAccepted() =>
        Assert.Contains("batching or sequential", Assert.Throws<ArgumentException>(() => ServingEngineOptions.ParseKind("fast")).Message);

    [Fact]
    public void MaxQueueMustBePositive() =>
        Assert.Throws<ArgumentException>(() => new ServingEngineOptions { MaxQueue = 0 });

    [Theory]
    [InlineData(EngineKind.Batching)]
    [InlineData(EngineKind.Sequential)]
    public void EveryKindBuildsAWorkingEngine(EngineKind kind)
    {
        using var generator = new Generator(1);
        using var model = new DecoderLm(new DecoderLmOptions { VocabSize = 258, ModelDim = 16, NumLayers = 1, NumHeads = 2, NumKvHeads = 1, HeadDim = 8, MlpDim = 32, MaxSequenceLength = 32 }, generator: generator);
        using var engine = EngineFactory.Create(model, new ByteVocabulary(), "m", new ServingEngineOptions { Kind = kind, MaxQueue = 4 });
        Assert.Equal("m", engine.ModelName);
        Assert.Equal(32, engine.ContextLength);
        var updates = engine.GenerateAsync(new GenerationRequest([1, 2], new Inference.SamplingOptions { MaxTokens = 3, StopAtEos = false })).ToBlockingEnumerable().ToList();
        Assert.Equal(3, updates[^1].CompletionTokens);
    }
}
