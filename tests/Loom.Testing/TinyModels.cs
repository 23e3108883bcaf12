using Loom.Models;
using Loom.Models.T5;

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

    /// <summary>The tiny decoder with a mixture of <paramref name="experts"/> experts (top-<paramref name="topK"/>) in every <paramref name="every"/>-th layer.</summary>
    public static DecoderLmOptions MoeDecoder(int experts = 4, int topK = 2, int every = 1, double? capacityFactor = 1.25) => Decoder() with
    {
        MlpDim = 32,
        Moe = new MoeOptions { NumExperts = experts, TopK = topK, Every = every, CapacityFactor = capacityFactor },
    };

    /// <summary>
    /// A vision_language model for 8×8 greyscale images in 4×4 patches (4 soft tokens each), over the byte vocabulary
    /// plus the placeholder id 258 (<c>byte+extra_ids=1</c>), with a two-layer decoder of width 32 and a 64-token context.
    /// </summary>
    public static Loom.Models.VisionLanguage.VisionLanguageOptions VisionLanguage() => new()
    {
        VocabSize = 259, MaxSequenceLength = 64, ImageSize = 8, PatchSize = 4, VisionDim = 16, VisionLayers = 2, VisionHeads = 2,
        VisionMlpDim = 32, ImageTokenId = 258,
        Decoder = new DecoderLmOptions { ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64 },
    };

    /// <summary>
    /// A T5 (v1.1) encoder-decoder of t5-tiny's shape but smaller (2 + 2 blocks of width 32, 4 heads of 8,
    /// 8 relative-position buckets), over <paramref name="vocabSize"/> ids (258: the byte vocabulary) with
    /// encoder inputs and decoder sequences of up to <paramref name="maxSequenceLength"/> tokens.
    /// </summary>
    public static T5Options T5(int vocabSize = 258, int maxSequenceLength = 64) => new()
    {
        VocabSize = vocabSize, ModelDim = 32, NumEncoderLayers = 2, NumDecoderLayers = 2, NumHeads = 4, HeadDim = 8, MlpDim = 64,
        RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16, MaxSequenceLength = maxSequenceLength,
    };
}
