using System.Text.Json.Serialization;

namespace Loom.Models;

/// <summary>Feed-forward nonlinearity of a decoder block.</summary>
public enum MlpActivation
{
    /// <summary>SwiGLU (PaLM): down(Swish(x W_gate) · (x W_up)); three kernels.</summary>
    [JsonStringEnumMemberName("swiglu")]
    SwiGlu,

    /// <summary>GELU (exact, with erf): down(GELU(x W_up)); two kernels.</summary>
    Gelu,

    /// <summary>GeGLU (T5.1.1's gated GELU): down(GELU_tanh(x W_gate) · (x W_up)); three kernels.</summary>
    [JsonStringEnumMemberName("geglu")]
    GeGlu,

    /// <summary>GELU with the tanh approximation (GPT-2's <c>gelu_new</c>): down(GELU_tanh(x W_up)); two kernels.</summary>
    GeluTanh,
}

/// <summary>How token positions enter the model.</summary>
public enum PositionEncoding
{
    /// <summary>Rotary position embeddings applied to queries and keys (PaLM).</summary>
    Rotary,

    /// <summary>A learned absolute position embedding added to the token embedding (GPT-2).</summary>
    Learned,
}

/// <summary>Normalisation layer.</summary>
public enum NormKind
{
    /// <summary>Root-mean-square norm (scale only).</summary>
    RmsNorm,

    /// <summary>Layer norm (mean and variance); with a bias only when <see cref="DecoderLmOptions.UseBias"/>.</summary>
    LayerNorm,
}

/// <summary>
/// Shape and architectural switches of a decoder-only Transformer. Each PaLM choice is one switch:
/// SwiGLU, parallel block, multi-query attention (<see cref="NumKvHeads"/> = 1), rotary positions,
/// shared input/output embeddings, no biases. Validate with <see cref="Validate"/>; every model
/// constructor does.
/// </summary>
public sealed record DecoderLmOptions : ModelOptions
{
    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override string Architecture => ModelArchitectures.DecoderLm;

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override Loom.Data.FeatureConverters.FeatureLayout FeatureLayout => Loom.Data.FeatureConverters.FeatureLayout.Decoder;

    /// <summary>Width of the residual stream (d_model).</summary>
    public int ModelDim { get; init; } = 256;

    /// <summary>Number of decoder blocks.</summary>
    public int NumLayers { get; init; } = 4;

    /// <summary>Number of query heads.</summary>
    public int NumHeads { get; init; } = 4;

    /// <summary>Number of key/value heads: 1 = multi-query, fewer than <see cref="NumHeads"/> = grouped, equal = multi-head.</summary>
    public int NumKvHeads { get; init; } = 1;

    /// <summary>Width of each attention head.</summary>
    public int HeadDim { get; init; } = 64;

    /// <summary>Hidden width of the feed-forward layer (PaLM: 4 · d_model).</summary>
    public int MlpDim { get; init; } = 1024;

    /// <summary>Feed-forward nonlinearity.</summary>
    public MlpActivation Activation { get; init; } = MlpActivation.SwiGlu;

    /// <summary>Parallel block y = x + Attn(LN x) + MLP(LN x) (PaLM) instead of the serial block.</summary>
    public bool ParallelBlock { get; init; } = true;

    /// <summary>Position encoding.</summary>
    public PositionEncoding Positions { get; init; } = PositionEncoding.Rotary;

    /// <summary>Share the input embedding with the output projection (logits scaled by 1/sqrt(d_model)).</summary>
    public bool SharedEmbeddings { get; init; } = true;

    /// <summary>
    /// With shared embeddings, divide the output projection's logits by √d_model, as PaLM does (its embeddings are
    /// N(0, 1)); GPT-2, Llama and Gemma's tied projections do not (false). Ignored with untied embeddings.
    /// </summary>
    public bool ScaleSharedLogits { get; init; } = true;

    /// <summary>Biases in dense kernels and norms (PaLM: none).</summary>
    public bool UseBias { get; init; }

    /// <summary>Normalisation layer.</summary>
    public NormKind Norm { get; init; } = NormKind.RmsNorm;

    /// <summary>Rotary base frequency.</summary>
    public double RopeBase { get; init; } = 10000;

    /// <summary>Rotary position scaling for a context longer than the trained one (Llama 3.1, position interpolation), or null for none.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Epsilon of the norms.</summary>
    public double NormEpsilon { get; init; } = 1e-6;

    /// <summary>Mixture-of-experts MLPs (every layer or every k-th layer), or null for dense MLPs.</summary>
    public MoeOptions? Moe { get; init; }

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public override DenseDecoderShape? DenseDecoder => Moe is not null ? null
        : new(NumLayers, ModelDim, NumHeads, NumKvHeads, HeadDim, MlpDim, VocabSize, ParallelBlock,
            GatedMlp: Activation is MlpActivation.SwiGlu or MlpActivation.GeGlu, SharedEmbeddings);

    /// <summary>Multiply the token embeddings by √d_model (in the embedding's dtype), as Gemma does.</summary>
    public bool ScaleEmbeddings { get; init; }

    /// <summary>
    /// RMSNorms scale by (1 + w) rather than w, with w stored and initialised to 0, as Gemma's do: the weight keeps its
    /// own value, so the scale round-trips to Gemma's checkpoints bit for bit. RMSNorm only.
    /// </summary>
    public bool NormUnitOffset { get; init; }

    /// <summary>
    /// Gemma 2's extra norms: each sublayer's output is normed before the residual add,
    /// h = x + N₂(Attn(N₁ x)); y = h + N₄(MLP(N₃ h)). Serial blocks only.
    /// </summary>
    public bool PostNorms { get; init; }

    /// <summary>Attention scores are scaled by this^-½ instead of head_dim^-½ (Gemma 2's query_pre_attn_scalar); null = head_dim.</summary>
    public double? QueryPreAttnScalar { get; init; }

    /// <summary>Attention scores are soft-capped to cap · tanh(s / cap) before masking (Gemma 2: 50); null = no cap.</summary>
    public double? AttentionLogitSoftcap { get; init; }

    /// <summary>The output logits are soft-capped to cap · tanh(z / cap) (Gemma 2: 30); null = no cap.</summary>
    public double? FinalLogitSoftcap { get; init; }

    /// <summary>How attention scores are computed (<c>model.attention_impl</c>): the fused kernel, or blockwise for long sequences.</summary>
    public AttentionImpl AttentionImpl { get; init; } = AttentionImpl.Sdpa;

    /// <summary>Queries and keys per tile of blockwise attention (<c>model.attention_block_size</c>); unused by sdpa.</summary>
    public int AttentionBlockSize { get; init; } = 512;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and the valid range.</summary>
    public override DecoderLmOptions Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(ModelDim, "model_dim");
        Positive(NumLayers, "num_layers");
        Positive(NumHeads, "num_heads");
        Positive(NumKvHeads, "num_kv_heads");
        Positive(HeadDim, "head_dim");
        Positive(MlpDim, "mlp_dim");
        Positive(MaxSequenceLength, "max_sequence_length");
        if (NumKvHeads > NumHeads || NumHeads % NumKvHeads != 0)
            throw new ArgumentException($"model.num_kv_heads = {NumKvHeads} must divide model.num_heads = {NumHeads} (1 = multi-query, num_heads = multi-head)");
        if (Positions == PositionEncoding.Rotary && HeadDim % 2 != 0)
            throw new ArgumentException($"model.head_dim = {HeadDim} must be even for rotary position embeddings");
        if (!(RopeBase > 1)) throw new ArgumentException($"model.rope_base = {RopeBase} must be greater than 1");
        if (RopeScaling is not null && Positions != PositionEncoding.Rotary)
            throw new ArgumentException($"model.rope_scaling is set but model.positions = {Positions}: scaling applies to rotary positions only");
        RopeScaling?.Validate();
        if (!(NormEpsilon > 0)) throw new ArgumentException($"model.norm_epsilon = {NormEpsilon} must be positive");
        Moe?.Validate();
        if (NormUnitOffset && Norm != NormKind.RmsNorm)
            throw new ArgumentException($"model.norm_unit_offset = true needs model.norm = rms_norm, not {Norm}");
        if (PostNorms && ParallelBlock)
            throw new ArgumentException("model.post_norms = true needs serial blocks (model.parallel_block = false)");
        if (QueryPreAttnScalar is { } scalar && !(scalar > 0)) throw new ArgumentException($"model.query_pre_attn_scalar = {scalar} must be positive, or null for head_dim");
        if (AttentionLogitSoftcap is { } cap && !(cap > 0)) throw new ArgumentException($"model.attention_logit_softcap = {cap} must be positive, or null for none");
        if (FinalLogitSoftcap is { } final && !(final > 0)) throw new ArgumentException($"model.final_logit_softcap = {final} must be positive, or null for none");
        if (!Enum.IsDefined(AttentionImpl)) throw new ArgumentException($"model.attention_impl = {AttentionImpl} is not known: use sdpa or blockwise");
        Positive(AttentionBlockSize, "attention_block_size");
        return this;
    }

    /// <inheritdoc />
    public override LanguageModel Build(TorchSharp.torch.Device? device = null, TorchSharp.torch.Generator? generator = null) => new DecoderLm(Validate(), device, generator);
}

/// <summary>How a decoder computes softmax(QKᵀ) V.</summary>
public enum AttentionImpl
{
    /// <summary>scaled_dot_product_attention (or the written-out scores where a scale or soft-cap needs them): the T×S scores at once.</summary>
    Sdpa,

    /// <summary><see cref="Layers.BlockwiseAttention"/>: tiles of scores with an online softmax; memory linear in length without gradients.</summary>
    Blockwise,
}
