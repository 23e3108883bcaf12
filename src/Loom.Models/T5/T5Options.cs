using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// Shape of a T5 (v1.1) encoder-decoder (Raffel et al. 2020; T5.1.1): a bidirectional encoder and a
/// causal decoder with cross-attention, RMSNorm pre-norm without biases, a gated-GELU MLP, bucketed
/// relative position biases (one table per stack, shared by its layers), an input embedding shared by
/// both stacks and an untied output layer. The architecture tag is <c>t5</c>.
/// </summary>
public sealed record T5Options : ModelOptions
{
    /// <summary>Creates the options with T5.1.1's defaults for everything but the sizes.</summary>
    public T5Options()
    {
        VocabSize = 32128;
        MaxSequenceLength = 512;
    }

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore] // the tag is the polymorphic discriminator, not a property
    public override string Architecture => ModelArchitectures.T5;

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override Loom.Data.FeatureConverters.FeatureLayout FeatureLayout => Loom.Data.FeatureConverters.FeatureLayout.EncoderDecoder;

    /// <summary>Width of the residual stream (d_model).</summary>
    public int ModelDim { get; init; } = 512;

    /// <summary>Encoder blocks.</summary>
    public int NumEncoderLayers { get; init; } = 8;

    /// <summary>Decoder blocks.</summary>
    public int NumDecoderLayers { get; init; } = 8;

    /// <summary>Attention heads (T5 uses multi-head attention: as many key/value heads).</summary>
    public int NumHeads { get; init; } = 6;

    /// <summary>Width of each head (d_kv).</summary>
    public int HeadDim { get; init; } = 64;

    /// <summary>Hidden width of the gated-GELU MLP (d_ff).</summary>
    public int MlpDim { get; init; } = 1024;

    /// <summary>Buckets of the relative position bias.</summary>
    public int RelativeAttentionNumBuckets { get; init; } = 32;

    /// <summary>Distance beyond which relative positions share the last bucket.</summary>
    public int RelativeAttentionMaxDistance { get; init; } = 128;

    /// <summary>Dropout rate after attention, MLP and embeddings while training (T5.1.1 pre-training: 0; fine-tuning: 0.1).</summary>
    public double DropoutRate { get; init; }

    /// <summary>Epsilon of the RMS norms.</summary>
    public double NormEpsilon { get; init; } = 1e-6;

    /// <summary>Mixture-of-experts MLPs in both stacks (Switch-style T5), or null for dense MLPs.</summary>
    public MoeOptions? Moe { get; init; }

    /// <inheritdoc />
    public override T5Options Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(ModelDim, "model_dim");
        Positive(NumEncoderLayers, "num_encoder_layers");
        Positive(NumDecoderLayers, "num_decoder_layers");
        Positive(NumHeads, "num_heads");
        Positive(HeadDim, "head_dim");
        Positive(MlpDim, "mlp_dim");
        Positive(MaxSequenceLength, "max_sequence_length");
        Positive(RelativeAttentionNumBuckets, "relative_attention_num_buckets");
        Positive(RelativeAttentionMaxDistance, "relative_attention_max_distance");
        if (RelativeAttentionNumBuckets % 2 != 0)
            throw new ArgumentException($"model.relative_attention_num_buckets = {RelativeAttentionNumBuckets} must be even (the encoder's buckets are split between the two directions)");
        if (RelativeAttentionNumBuckets < 4)
            throw new ArgumentException($"model.relative_attention_num_buckets = {RelativeAttentionNumBuckets} must be at least 4 (each of the encoder's two directions needs an exact and a logarithmic bucket)");
        if (RelativeAttentionMaxDistance <= RelativeAttentionNumBuckets / 2)
            throw new ArgumentException($"model.relative_attention_max_distance = {RelativeAttentionMaxDistance} must exceed relative_attention_num_buckets / 2 = {RelativeAttentionNumBuckets / 2} (the decoder's exactly bucketed distances)");
        if (!(DropoutRate >= 0 && DropoutRate < 1)) throw new ArgumentException($"model.dropout_rate = {DropoutRate} must be in [0, 1)");
        if (!(NormEpsilon > 0)) throw new ArgumentException($"model.norm_epsilon = {NormEpsilon} must be positive");
        Moe?.Validate();
        return this;
    }

    /// <inheritdoc />
    public override LanguageModel Build(Device? device = null, Generator? generator = null) => new T5Model(Validate(), device, generator);
}
