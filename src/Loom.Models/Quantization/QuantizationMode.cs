namespace Loom.Models.Quantization;

/// <summary>How the linear layers of a model are stored for inference (see <see cref="LanguageModel.Quantize"/>).</summary>
public enum QuantizationMode
{
    /// <summary>Float weights, as trained.</summary>
    None,

    /// <summary>
    /// Weight-only int8: each output row of every linear kernel becomes int8 values and one float
    /// scale (symmetric, per output channel; Pope et al. 2022, Dettmers et al. 2022). Activations
    /// stay in float.
    /// </summary>
    Int8,
}
