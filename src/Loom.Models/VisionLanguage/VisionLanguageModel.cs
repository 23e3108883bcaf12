using Loom.Data;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.VisionLanguage;

/// <summary>
/// Gemini-style image + text model: <c>soft = W · ViT(image)</c>, (M, K, D), replaces the embeddings of the image
/// placeholder ids of the token sequence, which then runs through a <see cref="DecoderLm"/>'s blocks and head as one
/// causal sequence of text and image tokens. Text-only input is the decoder alone.
/// </summary>
public sealed class VisionLanguageModel : LanguageModel
{
    private readonly VisionEncoder vision;
    private readonly Dense projection;   // (D, Dv): ViT features into the decoder's embedding space
    private readonly DecoderLm decoder;
    private readonly VisionLanguageOptions options;

    /// <summary>Builds the model on <paramref name="device"/> drawing from <paramref name="generator"/> (see <see cref="DecoderLm"/>).</summary>
    public VisionLanguageModel(VisionLanguageOptions options, Device? device = null, Generator? generator = null) : base(nameof(VisionLanguageModel))
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        decoder = new DecoderLm(this.options.DecoderOptions, device, generator);
        vision = new VisionEncoder(this.options, device, generator);
        projection = new Dense(this.options.VisionDim, this.options.DecoderOptions.ModelDim, useBias: true, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override ModelOptions Options => options;

    /// <inheritdoc />
    public override ImageInputSpec ImageInput => new(options.ImageSize, options.TokensPerImage, options.ImageTokenId);

    /// <inheritdoc />
    public override KvCacheShape KvCacheShape => decoder.KvCacheShape;

    /// <inheritdoc />
    public override Tensor EncodeImages(Tensor pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.dim() != 3 || pixels.shape[1] != options.ImageSize || pixels.shape[2] != options.ImageSize)
            throw new ArgumentException($"images must be (M, {options.ImageSize}, {options.ImageSize}) greyscale, not ({string.Join(", ", pixels.shape)})");
        return projection.forward(vision.forward(pixels.to(float32))); // (M, K, D)
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor tokens, IAttentionContext? context) => decoder.Forward(tokens, context);

    /// <inheritdoc />
    public override Tensor Forward(Tensor tokens, Tensor softTokens, Tensor imageMask, IAttentionContext? context)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (context is null && tokens.shape[1] > options.MaxSequenceLength)
            throw new ArgumentException($"sequence of {tokens.shape[1]} tokens exceeds model.max_sequence_length = {options.MaxSequenceLength}");
        return decoder.Head(decoder.Blocks(Embed(tokens, softTokens, imageMask, context), context)); // (B, T, V)
    }

    /// <summary>The decoder this model feeds (its embedding, blocks and head).</summary>
    public DecoderLm Decoder => decoder;

    /// <summary>
    /// The decoder's input: token embeddings of <paramref name="tokens"/>, (B, T), except where <paramref name="imageMask"/>,
    /// (B, T) bool, is true, which take the rows of <paramref name="softTokens"/>, (N, D), in row-major order: (B, T, D).
    /// </summary>
    /// <exception cref="ArgumentException">The mask's true count is not N.</exception>
    public Tensor Embed(Tensor tokens, Tensor softTokens, Tensor imageMask, IAttentionContext? context)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(softTokens);
        ArgumentNullException.ThrowIfNull(imageMask);
        long b = tokens.shape[0], t = tokens.shape[1];
        var x = decoder.Embed(tokens, context);                                    // (B, T, D)
        var at = imageMask.reshape(-1).nonzero().squeeze(1);                       // (N) flat positions of the soft tokens
        if (at.shape[0] != softTokens.shape[0])
            throw new ArgumentException($"the sequence has {at.shape[0]} image positions but {softTokens.shape[0]} soft tokens were given ({options.TokensPerImage} per image)");
        return x.reshape(b * t, -1).index_copy(0, at, softTokens.to(x.dtype)).view(b, t, -1); // (B, T, D)
    }

    /// <inheritdoc />
    /// <remarks>
    /// With <see cref="FeatureNames.ImagePixels"/>, (B, M, H, W), row b's placeholder ids take its M images' soft tokens
    /// in order; every row must hold exactly M · K placeholder ids.
    /// </remarks>
    public override ModelOutput Forward(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.SegmentIds is not null)
            throw new ArgumentException("vision_language models train on unpacked rows (one example per row): the batch has segment ids");
        var empty = new Dictionary<string, Tensor>();
        if (features.Find(FeatureNames.ImagePixels) is not { } pixels)
            return new ModelOutput(decoder.Forward(features.Inputs, null), empty, empty);
        var soft = EncodeImages(pixels.flatten(0, 1));                             // (B·M, K, D)
        var mask = features.Inputs.eq(options.ImageTokenId);                      // (B, T)
        var logits = Forward(features.Inputs, soft.reshape(-1, soft.shape[2]), mask, null); // (B, T, V)
        return new ModelOutput(logits, empty, empty);
    }

    /// <inheritdoc />
    public override long ActiveParameterCount => ParameterCount;

    /// <inheritdoc />
    /// <remarks>The decoder's FLOPs per token, plus the ViT's and the projection's (6 · N) for one image per sequence, spread over its tokens.</remarks>
    public override double FlopsPerToken(int sequenceLength)
    {
        long visionMatmul = vision.parameters().Sum(p => p.NumberOfElements) + projection.parameters().Sum(p => p.NumberOfElements);
        return decoder.FlopsPerToken(sequenceLength) + 6.0 * visionMatmul * options.TokensPerImage / Math.Max(1, sequenceLength);
    }
}
