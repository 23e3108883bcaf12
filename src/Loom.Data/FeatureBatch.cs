using TorchSharp;

namespace Loom.Data;

/// <summary>The names of model features, as seqio's feature converters and t5x's models spell them.</summary>
public static class FeatureNames
{
    /// <summary>Decoder inputs: the targets shifted right behind a start token, (B, Ld) int64.</summary>
    public const string DecoderInputTokens = "decoder_input_tokens";

    /// <summary>Decoder targets, (B, Ld) int64.</summary>
    public const string DecoderTargetTokens = "decoder_target_tokens";

    /// <summary>Weight of each target in the loss (0 in padding and, for prefix-LM rows, on inputs), (B, Ld).</summary>
    public const string DecoderLossWeights = "decoder_loss_weights";

    /// <summary>Decoder segment ids of packed rows, 0 in padding, (B, Ld).</summary>
    public const string DecoderSegmentIds = "decoder_segment_ids";

    /// <summary>Decoder positions within segments, (B, Ld).</summary>
    public const string DecoderPositions = "decoder_positions";

    /// <summary>Nonzero on a prefix-LM segment's bidirectional prefix, (B, Ld).</summary>
    public const string DecoderCausalAttention = "decoder_causal_attention";

    /// <summary>Encoder inputs, (B, Le) int64.</summary>
    public const string EncoderInputTokens = "encoder_input_tokens";

    /// <summary>Encoder segment ids of packed rows, 0 in padding, (B, Le).</summary>
    public const string EncoderSegmentIds = "encoder_segment_ids";

    /// <summary>Encoder positions within segments, (B, Le).</summary>
    public const string EncoderPositions = "encoder_positions";

    /// <summary>
    /// Images. For an image classifier (<see cref="FeatureConverters.FeatureLayout.Image"/>): normalized pixels,
    /// (B, C, H, W) float32, whose class ids are the decoder targets, (B, 1). For image + text rows
    /// (<see cref="FeatureConverters.FeatureLayout.ImageText"/>): (B, M, H, W) float32 in [0, 1] (greyscale), row b's
    /// M images, whose soft tokens replace that row's image-placeholder ids in order (M · tokens per image of them).
    /// </summary>
    public const string ImagePixels = "image_pixels";
}

/// <summary>
/// A batch of named model features (<see cref="FeatureNames"/>): what a feature converter produces and
/// a model's loss consumes. A decoder-only LM stream has decoder inputs and targets; packed rows add
/// segment ids, positions and loss weights; an encoder-decoder batch adds the encoder's features.
/// Disposing the batch disposes its tensors.
/// </summary>
public sealed class FeatureBatch : IDisposable
{
    private readonly Dictionary<string, torch.Tensor> _features;

    /// <summary>Creates a batch from named tensors, which it then owns.</summary>
    /// <exception cref="ArgumentException">The decoder targets are missing.</exception>
    public FeatureBatch(IReadOnlyDictionary<string, torch.Tensor> features)
    {
        ArgumentNullException.ThrowIfNull(features);
        _features = new Dictionary<string, torch.Tensor>(features, StringComparer.Ordinal);
        if (!_features.ContainsKey(FeatureNames.DecoderTargetTokens))
            throw new ArgumentException($"a feature batch needs \"{FeatureNames.DecoderTargetTokens}\" (it has: {string.Join(", ", _features.Keys)})", nameof(features));
    }

    /// <summary>A decoder-only batch: inputs and targets, and for packed rows segment ids, positions and loss weights.</summary>
    public static FeatureBatch Decoder(torch.Tensor inputs, torch.Tensor targets, torch.Tensor? segmentIds = null, torch.Tensor? positions = null, torch.Tensor? lossWeights = null)
    {
        var features = new Dictionary<string, torch.Tensor>
        {
            [FeatureNames.DecoderInputTokens] = inputs ?? throw new ArgumentNullException(nameof(inputs)),
            [FeatureNames.DecoderTargetTokens] = targets ?? throw new ArgumentNullException(nameof(targets)),
        };
        if (segmentIds is not null) features[FeatureNames.DecoderSegmentIds] = segmentIds;
        if (positions is not null) features[FeatureNames.DecoderPositions] = positions;
        if (lossWeights is not null) features[FeatureNames.DecoderLossWeights] = lossWeights;
        return new FeatureBatch(features);
    }

    /// <summary>The names present.</summary>
    public IReadOnlyCollection<string> Names => _features.Keys;

    /// <summary>The feature <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">The batch has no such feature.</exception>
    public torch.Tensor this[string name] => _features.TryGetValue(name, out var t)
        ? t
        : throw new KeyNotFoundException($"the batch has no feature \"{name}\" (it has: {string.Join(", ", _features.Keys)}); is it the model's feature converter's batch?");

    /// <summary>The feature <paramref name="name"/>, or null when absent.</summary>
    public torch.Tensor? Find(string name) => _features.GetValueOrDefault(name);

    /// <summary>Decoder inputs, (B, T).</summary>
    public torch.Tensor Inputs => this[FeatureNames.DecoderInputTokens];

    /// <summary>Decoder targets, (B, T).</summary>
    public torch.Tensor Targets => this[FeatureNames.DecoderTargetTokens];

    /// <summary>Decoder segment ids, or null for rows of one unbroken stream.</summary>
    public torch.Tensor? SegmentIds => Find(FeatureNames.DecoderSegmentIds);

    /// <summary>Decoder positions within segments, or null.</summary>
    public torch.Tensor? Positions => Find(FeatureNames.DecoderPositions);

    /// <summary>Loss weights, or null where every target counts.</summary>
    public torch.Tensor? LossWeights => Find(FeatureNames.DecoderLossWeights);

    /// <summary>Whether the decoder rows are packed examples (with segment ids, positions and loss weights).</summary>
    public bool IsPacked => SegmentIds is not null;

    /// <summary>Whether the batch carries encoder inputs (an encoder-decoder batch).</summary>
    public bool HasEncoder => _features.ContainsKey(FeatureNames.EncoderInputTokens);

    /// <summary>The same features on <paramref name="device"/>, as new tensors in the caller's dispose scope (this batch is unchanged).</summary>
    public FeatureBatch To(torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new FeatureBatch(_features.ToDictionary(p => p.Key, p => p.Value.to(device), StringComparer.Ordinal));
    }

    /// <summary>Moves every tensor to the dispose scope outside the current one (as a batch source hands it over).</summary>
    public FeatureBatch MoveToOuterDisposeScope()
    {
        foreach (var t in _features.Values) t.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        foreach (var t in _features.Values) t.Dispose();
    }
}
