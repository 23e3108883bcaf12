using System.Text.Json.Serialization;
using Loom.Data.FeatureConverters;
using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>Which attention the Reformer's F sublayers compute in training and in a context-free forward.</summary>
public enum ReformerAttentionKind
{
    /// <summary>Shared-QK LSH attention (Reformer §2): buckets, rounds, chunks.</summary>
    Lsh,

    /// <summary>Full shared-QK attention, the quadratic reference LSH approximates.</summary>
    Full,
}

/// <summary>
/// Shape of a Reformer language model (Kitaev, Kaiser, Levskaya 2020): learned positions, a stack of reversible
/// blocks with F = pre-norm shared-QK attention (LSH or full) and G = pre-norm chunked feed-forward, the two
/// halves concatenated and normed (as trax's ReformerLM), and a chunked output layer with chunked loss. The
/// architecture tag is <c>reformer</c>.
/// </summary>
public sealed record ReformerOptions : ModelOptions
{
    /// <summary>Creates the options with byte-level defaults.</summary>
    public ReformerOptions()
    {
        VocabSize = 258;
        MaxSequenceLength = 4096;
    }

    /// <inheritdoc />
    [JsonIgnore]
    public override string Architecture => ModelArchitectures.Reformer;

    /// <inheritdoc />
    [JsonIgnore]
    public override FeatureLayout FeatureLayout => FeatureLayout.Decoder;

    /// <summary>Width of each half of the reversible residual stream (X₁ and X₂ are each this wide).</summary>
    public int ModelDim { get; init; } = 256;

    /// <summary>Number of reversible blocks (each one attention F and one feed-forward G).</summary>
    public int NumLayers { get; init; } = 6;

    /// <summary>Attention heads (multi-head: each has its own shared QK and V).</summary>
    public int NumHeads { get; init; } = 4;

    /// <summary>Width of each head.</summary>
    public int HeadDim { get; init; } = 64;

    /// <summary>Hidden width of the feed-forward layer.</summary>
    public int MlpDim { get; init; } = 1024;

    /// <summary>Feed-forward nonlinearity.</summary>
    public MlpActivation Activation { get; init; } = MlpActivation.Gelu;

    /// <summary>Attention in training and context-free forwards (<c>model.attention</c>): lsh or full. Cached decoding always attends to every cached key.</summary>
    public ReformerAttentionKind Attention { get; init; } = ReformerAttentionKind.Lsh;

    /// <summary>LSH buckets per round (<c>model.lsh_buckets</c>): 1 or an even number.</summary>
    public int LshBuckets { get; init; } = 32;

    /// <summary>Independent LSH hash rounds (<c>model.lsh_rounds</c>).</summary>
    public int LshRounds { get; init; } = 2;

    /// <summary>Length of the chunks of the bucket-sorted sequence (<c>model.lsh_chunk_length</c>); must divide every training sequence length.</summary>
    public int LshChunkLength { get; init; } = 64;

    /// <summary>Seed of the LSH rotations (<c>model.lsh_seed</c>): mixed with a training-forward counter and the layer index.</summary>
    public long LshSeed { get; init; } = 1;

    /// <summary>Whether the stack recomputes activations in the backward instead of keeping them (<c>model.reversible</c>).</summary>
    public bool Reversible { get; init; } = true;

    /// <summary>Positions per chunk of the feed-forward layer (<c>model.ff_chunk_length</c>).</summary>
    public int FfChunkLength { get; init; } = 512;

    /// <summary>Positions per chunk of the output layer and its loss (<c>model.output_chunk_length</c>).</summary>
    public int OutputChunkLength { get; init; } = 512;

    /// <summary>Normalisation layer.</summary>
    public NormKind Norm { get; init; } = NormKind.LayerNorm;

    /// <summary>Epsilon of the norms.</summary>
    public double NormEpsilon { get; init; } = 1e-6;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and the valid range.</summary>
    public override ReformerOptions Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(MaxSequenceLength, "max_sequence_length");
        Positive(ModelDim, "model_dim");
        Positive(NumLayers, "num_layers");
        Positive(NumHeads, "num_heads");
        Positive(HeadDim, "head_dim");
        Positive(MlpDim, "mlp_dim");
        if (!Enum.IsDefined(Activation)) throw new ArgumentException($"model.activation = {Activation} is not known: use gelu, swiglu, geglu or gelu_tanh");
        if (!Enum.IsDefined(Attention)) throw new ArgumentException($"model.attention = {Attention} is not known: use lsh or full");
        if (LshBuckets < 1 || (LshBuckets > 1 && LshBuckets % 2 != 0))
            throw new ArgumentException($"model.lsh_buckets = {LshBuckets} must be 1 or an even number ≥ 2");
        Positive(LshRounds, "lsh_rounds");
        Positive(LshChunkLength, "lsh_chunk_length");
        Positive(FfChunkLength, "ff_chunk_length");
        Positive(OutputChunkLength, "output_chunk_length");
        if (!Enum.IsDefined(Norm)) throw new ArgumentException($"model.norm = {Norm} is not known: use layer_norm or rms_norm");
        if (!(NormEpsilon > 0)) throw new ArgumentException($"model.norm_epsilon = {NormEpsilon} must be positive");
        return this;
    }

    /// <inheritdoc />
    public override LanguageModel Build(Device? device = null, Generator? generator = null) => new ReformerModel(Validate(), device, generator);
}
