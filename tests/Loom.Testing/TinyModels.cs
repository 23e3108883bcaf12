using Loom.Models;

namespace Loom.Testing;

/// <summary>Small model option sets shared by the tests.</summary>
public static class TinyModels
{
    /// <summary>A two-layer decoder over a 40-id vocabulary with a 32-token context.</summary>
    public static DecoderLmOptions Decoder(int kvHeads = 1, bool parallel = true) => new()
    {
        VocabSize = 40, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = kvHeads, HeadDim = 8,
        MlpDim = 64, MaxSequenceLength = 32, ParallelBlock = parallel,
    };
}
