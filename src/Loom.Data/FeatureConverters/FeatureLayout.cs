namespace Loom.Data.FeatureConverters;

/// <summary>Which feature converter a model's batches come from (the only bridge between tasks and a model, as in seqio).</summary>
public enum FeatureLayout
{
    /// <summary>Decoder-only rows: inputs ++ targets in one sequence (<see cref="PrefixLmFeatureConverter"/>, or LM streams).</summary>
    Decoder,

    /// <summary>Encoder-decoder rows: inputs to the encoder, targets to the decoder (<see cref="EncoderDecoderFeatureConverter"/>).</summary>
    EncoderDecoder,

    /// <summary>Images and their class: pixels (B, C, H, W) float under <see cref="FeatureNames.ImagePixels"/>, class ids (B, 1) as targets (<see cref="Images.ImageBatcher"/>).</summary>
    Image,

    /// <summary>Decoder-only rows of text with images: placeholder ids where an image's soft tokens go, and the images (<see cref="FeatureNames.ImagePixels"/>).</summary>
    ImageText,
}
