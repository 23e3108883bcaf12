using Loom.Models;

namespace Loom.Models.Tests;

/// <summary>Small option sets shared by the model tests.</summary>
internal static class TestModels
{
    public static DecoderLmOptions Tiny(int kvHeads = 1, bool parallel = true) => new()
    {
        VocabSize = 40, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = kvHeads, HeadDim = 8,
        MlpDim = 64, MaxSequenceLength = 32, ParallelBlock = parallel,
    };
}
