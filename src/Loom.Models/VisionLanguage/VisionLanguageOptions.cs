using static TorchSharp.torch;

namespace Loom.Models.VisionLanguage;

/// <summary>
/// A Gemini-style image + text model (architecture tag <c>vision_language</c>): a ViT encoder turns each image into
/// patches, then into soft tokens projected into the decoder's embedding space, which take the places of image
/// placeholder ids anywhere in one decoder sequence of text. The decoder is a <see cref="DecoderLm"/> built from
/// <see cref="Decoder"/>, whose vocab_size and max_sequence_length are this record's.
/// </summary>
public sealed record VisionLanguageOptions : ModelOptions
{
    /// <summary>Creates the options: a byte vocabulary plus one placeholder id (<c>byte+extra_ids=1</c>).</summary>
    public VisionLanguageOptions()
    {
        VocabSize = 259;
        MaxSequenceLength = 128;
    }

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override string Architecture => ModelArchitectures.VisionLanguage;

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override Loom.Data.FeatureConverters.FeatureLayout FeatureLayout => Loom.Data.FeatureConverters.FeatureLayout.ImageText;

    /// <summary>The decoder's shape (<c>model.decoder</c>); its vocab_size and max_sequence_length are taken from <c>model.vocab_size</c> and <c>model.max_sequence_length</c>.</summary>
    public DecoderLmOptions Decoder { get; init; } = new() { ModelDim = 128, NumLayers = 3, NumHeads = 4, HeadDim = 32, MlpDim = 512 };

    /// <summary>Height and width of the (square, greyscale) images in pixels.</summary>
    public int ImageSize { get; init; } = 28;

    /// <summary>Height and width of a patch; <see cref="ImageSize"/> must be a multiple of it.</summary>
    public int PatchSize { get; init; } = 7;

    /// <summary>Width of the ViT's residual stream.</summary>
    public int VisionDim { get; init; } = 64;

    /// <summary>ViT blocks.</summary>
    public int VisionLayers { get; init; } = 2;

    /// <summary>ViT attention heads (multi-head); they must divide <see cref="VisionDim"/>.</summary>
    public int VisionHeads { get; init; } = 4;

    /// <summary>Hidden width of the ViT's GELU MLP.</summary>
    public int VisionMlpDim { get; init; } = 256;

    /// <summary>The token id whose positions take an image's soft tokens (<c>&lt;extra_id_0&gt;</c> of <c>byte+extra_ids=1</c>: 258).</summary>
    public int ImageTokenId { get; init; } = 258;

    /// <summary>Patches per image side.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int PatchesPerSide => ImageSize / PatchSize;

    /// <summary>K: soft tokens per image, one per patch.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int TokensPerImage => PatchesPerSide * PatchesPerSide;

    /// <summary>The decoder's options with this record's vocabulary size and context length.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DecoderLmOptions DecoderOptions => Decoder with { VocabSize = VocabSize, MaxSequenceLength = MaxSequenceLength };

    /// <inheritdoc />
    public override VisionLanguageOptions Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(MaxSequenceLength, "max_sequence_length");
        Positive(ImageSize, "image_size");
        Positive(PatchSize, "patch_size");
        Positive(VisionDim, "vision_dim");
        Positive(VisionLayers, "vision_layers");
        Positive(VisionHeads, "vision_heads");
        Positive(VisionMlpDim, "vision_mlp_dim");
        if (Decoder is null) throw new ArgumentException("model.decoder is missing: give the decoder's shape (model_dim, num_layers, ...)");
        if (ImageSize % PatchSize != 0)
            throw new ArgumentException($"model.image_size = {ImageSize} must be a multiple of model.patch_size = {PatchSize}");
        if (VisionDim % VisionHeads != 0)
            throw new ArgumentException($"model.vision_heads = {VisionHeads} must divide model.vision_dim = {VisionDim}");
        if (ImageTokenId < 0 || ImageTokenId >= VocabSize)
            throw new ArgumentException($"model.image_token_id = {ImageTokenId} must be in [0, {VocabSize - 1}] (below model.vocab_size)");
        if (TokensPerImage > MaxSequenceLength)
            throw new ArgumentException($"an image's {TokensPerImage} soft tokens do not fit model.max_sequence_length = {MaxSequenceLength}: raise it or model.patch_size");
        if (Decoder.Positions != PositionEncoding.Rotary)
            throw new ArgumentException($"model.decoder.positions = {Decoder.Positions} is not supported for vision_language: use rotary (soft tokens carry no learned position)");
        if (Decoder.Moe is not null)
            throw new ArgumentException("model.decoder.moe is not supported for vision_language yet: remove it");
        DecoderOptions.Validate();
        return this;
    }

    /// <inheritdoc />
    public override LanguageModel Build(Device? device = null, Generator? generator = null) => new VisionLanguageModel(Validate(), device, generator);
}
