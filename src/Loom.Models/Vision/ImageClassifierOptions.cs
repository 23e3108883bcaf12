using Loom.Data.FeatureConverters;
using static TorchSharp.torch;

namespace Loom.Models.Vision;

/// <summary>
/// Shape of a small ResNet-style image classifier (tag <c>image_classifier</c>) whose spatial layers are either local
/// self-attention (Ramachandran et al. 2019: <see cref="LocalSelfAttention2d"/>, with the spatially-aware attention
/// stem) or k×k convolutions, its convolutional twin. Everything else is shared: stem, 2×2 average pooling, bottleneck
/// blocks in stages, global average pooling and a linear head over <see cref="NumClasses"/> classes.
/// </summary>
/// <remarks>
/// <see cref="ModelOptions.VocabSize"/> and <see cref="ModelOptions.MaxSequenceLength"/> are not used by the network (an
/// image is one "token" to the trainer); the class ids are the batch's targets.
/// </remarks>
public sealed record ImageClassifierOptions : ModelOptions
{
    /// <summary>The value of <see cref="Spatial"/> for local self-attention.</summary>
    public const string AttentionSpatial = "attention";

    /// <summary>The value of <see cref="Spatial"/> for convolutions.</summary>
    public const string ConvolutionSpatial = "convolution";

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override string Architecture => ModelArchitectures.ImageClassifier;

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override FeatureLayout FeatureLayout => FeatureLayout.Image;

    /// <summary>What the spatial layers are: <c>attention</c> (local self-attention, attention stem) or <c>convolution</c>.</summary>
    public string Spatial { get; init; } = AttentionSpatial;

    /// <summary>Input channels (1 for greyscale).</summary>
    public int InputChannels { get; init; } = 1;

    /// <summary>Height and width of the (square) input images.</summary>
    public int ImageSize { get; init; } = 28;

    /// <summary>Classes the head scores.</summary>
    public int NumClasses { get; init; } = 10;

    /// <summary>Output channels of the stem.</summary>
    public int StemWidth { get; init; } = 16;

    /// <summary>k of the stem's window (attention) or kernel (convolution); odd.</summary>
    public int StemKernelSize { get; init; } = 5;

    /// <summary>M value matrices of the spatially-aware attention stem (the paper uses 4); 1 turns the stem into plain local attention.</summary>
    public int StemValueMixtures { get; init; } = 4;

    /// <summary>Output channels of each stage's bottleneck blocks; every stage after the first halves the resolution first.</summary>
    public IReadOnlyList<int> StageWidths { get; init; } = [64, 128];

    /// <summary>Bottleneck blocks in each stage (as many entries as <see cref="StageWidths"/>).</summary>
    public IReadOnlyList<int> StageBlocks { get; init; } = [1, 1];

    /// <summary>A bottleneck's inner width is its output width divided by this (ResNet: 4).</summary>
    public int BottleneckRatio { get; init; } = 4;

    /// <summary>k of the blocks' spatial layers: the k×k attention window, or the k×k convolution; odd.</summary>
    public int KernelSize { get; init; } = 5;

    /// <summary>Attention heads of the blocks' spatial layers (the stem has one).</summary>
    public int NumHeads { get; init; } = 2;

    /// <summary>Whether the spatial layers are local self-attention.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsAttention => Spatial == AttentionSpatial;

    /// <inheritdoc />
    public override ImageClassifierOptions Validate()
    {
        if (Spatial is not (AttentionSpatial or ConvolutionSpatial))
            throw new ArgumentException($"model.spatial = '{Spatial}' must be '{AttentionSpatial}' or '{ConvolutionSpatial}'");
        Positive(InputChannels, "input_channels");
        Positive(ImageSize, "image_size");
        if (NumClasses < 2) throw new ArgumentException($"model.num_classes = {NumClasses} must be at least 2");
        Positive(StemWidth, "stem_width");
        Odd(StemKernelSize, "stem_kernel_size");
        Odd(KernelSize, "kernel_size");
        Positive(StemValueMixtures, "stem_value_mixtures");
        Positive(BottleneckRatio, "bottleneck_ratio");
        Positive(NumHeads, "num_heads");
        if (StageWidths is null || StageWidths.Count == 0) throw new ArgumentException("model.stage_widths must list at least one stage's width");
        if (StageBlocks is null || StageBlocks.Count != StageWidths.Count)
            throw new ArgumentException($"model.stage_blocks has {StageBlocks?.Count ?? 0} entries but model.stage_widths has {StageWidths.Count}: give one block count per stage");
        if (ImageSize % (1 << StageWidths.Count) != 0)
            throw new ArgumentException($"model.image_size = {ImageSize} must be divisible by {1 << StageWidths.Count} (the stem and each stage after the first halve it)");
        if (IsAttention && StemWidth % 2 != 0) throw new ArgumentException($"model.stem_width = {StemWidth} must be even (half the relative embedding for rows, half for columns)");
        for (int s = 0; s < StageWidths.Count; s++)
        {
            int width = StageWidths[s];
            if (width <= 0 || width % BottleneckRatio != 0)
                throw new ArgumentException($"model.stage_widths[{s}] = {width} must be a positive multiple of model.bottleneck_ratio = {BottleneckRatio}");
            int inner = width / BottleneckRatio;
            if (IsAttention && inner % (2 * NumHeads) != 0)
                throw new ArgumentException($"model.stage_widths[{s}] / bottleneck_ratio = {inner} must be a multiple of 2 × model.num_heads = {2 * NumHeads} (an even width per head)");
            if (StageBlocks[s] <= 0) throw new ArgumentException($"model.stage_blocks[{s}] = {StageBlocks[s]} must be a positive integer");
        }
        return this;
    }

    /// <inheritdoc />
    public override LanguageModel Build(Device? device = null, Generator? generator = null) => new ImageClassifier(Validate(), device, generator);

    private static void Odd(int value, string name)
    {
        if (value <= 0 || value % 2 == 0) throw new ArgumentException($"model.{name} = {value} must be a positive odd integer (the window is centred on its pixel)");
    }
}
