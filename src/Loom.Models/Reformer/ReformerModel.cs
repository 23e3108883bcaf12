using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// The Reformer language model (Kitaev, Kaiser, Levskaya 2020) on the model contract: token plus learned position
/// embeddings, copied into both halves X₁ = X₂ of a <see cref="ReversibleStack"/> whose blocks are
/// Y₁ = X₁ + Attn(X₂), Y₂ = X₂ + FFN(Y₁), with F a pre-norm shared-QK attention (<see cref="ReformerAttention"/>,
/// LSH or full) and G a pre-norm chunked feed-forward layer; then the halves concatenated and normed, [Y₁; Y₂]
/// → (B, T, 2D), as trax's ReformerLM does, and an output layer whose training loss is computed per chunk of
/// positions (<see cref="ChunkedCrossEntropy"/>).
/// </summary>
/// <remarks>
/// <para>Positions are learned absolute embeddings rather than rotary: rotary would rotate the shared QK vector by
/// its position before hashing, so the same content at two positions would fall into different LSH buckets; the paper
/// (and trax) add learned (axial) position embeddings to the input instead.</para>
/// <para>LSH rotations are drawn afresh for each training forward (as in the paper) from a seed mixed of
/// <see cref="ReformerOptions.LshSeed"/>, a counter of training forwards and the layer; the counter is a buffer
/// (<c>lsh_step</c>) saved with the weights, so a resumed run hashes as the uninterrupted one would (on a GPU reading it
/// costs one host sync per training forward). Outside training (eval mode or no grad) the rotations are fixed, so
/// evaluation is deterministic.</para>
/// <para>Against an <see cref="IAttentionContext"/> (a <see cref="KvCache"/> step or an engine's paged cache) every
/// layer attends to every cached key with full shared-QK attention: at decode time the one new query sees all of
/// its prefix, of which LSH attention is the approximation used in training.</para>
/// </remarks>
public sealed class ReformerModel : LanguageModel
{
    // Field names are the state-dict keys.
    private readonly Parameter embed;     // (V, D)
    private readonly Parameter pos_embed; // (maxLen, D)
    private readonly ReversibleStack blocks;
    private readonly nn.Module<Tensor, Tensor> final_norm; // over 2D
    private readonly Parameter lm_head;   // (V, 2D)
    private readonly Tensor lsh_step;     // () int64: training forwards so far
    private readonly ReformerAttention[] attention;
    private readonly ReformerOptions options;

    /// <summary>Builds the model on <paramref name="device"/> (meta: shapes only), drawing its weights from <paramref name="generator"/>.</summary>
    public ReformerModel(ReformerOptions options, Device? device = null, Generator? generator = null) : base(nameof(ReformerModel))
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        var o = this.options;
        embed = new Parameter(empty(o.VocabSize, o.ModelDim, device: device));
        Initializers.Normal(embed, 1, generator);
        pos_embed = new Parameter(empty(o.MaxSequenceLength, o.ModelDim, device: device));
        Initializers.Normal(pos_embed, 0.02, generator);
        attention = Enumerable.Range(0, o.NumLayers).Select(_ => new ReformerAttention(o, device, generator)).ToArray();
        blocks = new ReversibleStack(attention.Select(a => new ReversibleBlock(a,
            new ChunkedFeedForward(new PreNormFeedForward(o, device, generator), o.FfChunkLength))).ToList(), o.Reversible);
        final_norm = Norms.Create(o.Norm, 2 * o.ModelDim, o.NormEpsilon, useBias: true, device);
        lm_head = new Parameter(empty(o.VocabSize, 2 * o.ModelDim, device: device));
        Initializers.Normal(lm_head, 1 / Math.Sqrt(2 * o.ModelDim), generator);
        lsh_step = zeros(Array.Empty<long>(), ScalarType.Int64, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override ModelOptions Options => options;

    /// <summary>The validated Reformer options the model was built from.</summary>
    public ReformerOptions ReformerOptions => options;

    /// <inheritdoc />
    public override KvCacheShape KvCacheShape => new(options.NumLayers, options.NumHeads, options.HeadDim);

    /// <inheritdoc />
    public override Tensor Forward(Tensor tokens, IAttentionContext? context)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        return Logits(context is null ? Hidden(tokens, null, null) : CachedHidden(tokens, context)); // (B, T, V)
    }

    /// <inheritdoc />
    /// <remarks>Packed rows (segment ids and positions) are attended segment by segment; prefix-LM rows are not supported.</remarks>
    public override ModelOutput Forward(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var logits = Logits(Hidden(features));
        return new ModelOutput(logits, new Dictionary<string, Tensor>(), new Dictionary<string, Tensor>());
    }

    /// <inheritdoc />
    /// <remarks>The output layer and cross-entropy run per chunk of <see cref="ReformerOptions.OutputChunkLength"/> positions.</remarks>
    public override ModelLoss Loss(FeatureBatch features, double zLossWeight)
    {
        ArgumentNullException.ThrowIfNull(features);
        var hidden = final_norm.forward(Hidden(features));                                  // (B, T, 2D)
        var weights = features.LossWeights?.to(ScalarType.Float32) ?? ones_like(features.Targets, ScalarType.Float32); // (B, T)
        var (nll, z) = ChunkedCrossEntropy.Compute(hidden, lm_head, features.Targets, weights, options.OutputChunkLength);
        var count = weights.sum().clamp_min(1);
        var ce = nll / count;
        var zLoss = z / count;
        return new ModelLoss(ce + zLossWeight * zLoss, ce, zLoss);
    }

    private Tensor Hidden(FeatureBatch features)
    {
        if (features.Find(FeatureNames.DecoderCausalAttention) is not null)
            throw new NotSupportedException("a reformer model is a causal language model: prefix-LM rows (decoder_causal_attention) are not supported");
        var segments = features.SegmentIds;
        var positions = segments is null ? null
            : features.Positions ?? throw new ArgumentException($"packed rows need \"{FeatureNames.DecoderPositions}\" beside their segment ids");
        return Hidden(features.Inputs, segments, positions);
    }

    /// <summary>[Y₁; Y₂] of the stack over tokens (B, T) from position 0, or packed rows: (B, T, 2D).</summary>
    private Tensor Hidden(Tensor tokens, Tensor? segments, Tensor? positions)
    {
        long t = tokens.shape[1];
        if (t > options.MaxSequenceLength)
            throw new ArgumentException($"sequence of {t} tokens exceeds model.max_sequence_length = {options.MaxSequenceLength}");
        if (options.Attention == ReformerAttentionKind.Lsh && t % options.LshChunkLength != 0)
            throw new ArgumentException($"model.lsh_chunk_length = {options.LshChunkLength} must divide the sequence length {t}: choose a length that is a multiple of it");
        long step = training && is_grad_enabled() ? NextLshStep() : -1; // -1: fixed rotations outside training
        for (int l = 0; l < attention.Length; l++) attention[l].Prepare(MixSeed(options.LshSeed, step, l), segments);
        var x = Embed(tokens, positions);                                   // (B, T, D)
        var (y1, y2) = blocks.Forward(x, x);                                // (B, T, D) x 2
        return cat([y1, y2], -1);                                           // (B, T, 2D)
    }

    /// <summary>[Y₁; Y₂] of new tokens against a cache: the blocks run in order, each F attending through the context.</summary>
    private Tensor CachedHidden(Tensor tokens, IAttentionContext context)
    {
        var x1 = Embed(tokens, context.Positions);                          // (B, T, D)
        var x2 = x1;
        var layers = blocks.Blocks;
        for (int l = 0; l < layers.Count; l++)
        {
            x1 = x1 + attention[l].Forward(x2, l, context);                 // Y₁ = X₁ + Attn(X₂)
            x2 = x2 + layers[l].G.call(x1);                                  // Y₂ = X₂ + FFN(Y₁)
        }
        return cat([x1, x2], -1);                                           // (B, T, 2D)
    }

    /// <summary>Token plus position embeddings, (B, T) → (B, T, D); positions (B, T) or null for 0..T-1.</summary>
    private Tensor Embed(Tensor tokens, Tensor? positions)
    {
        long b = tokens.shape[0], t = tokens.shape[1];
        var x = embed.index_select(0, tokens.reshape(-1)).view(b, t, -1);   // (B, T, D)
        return positions is null
            ? x + pos_embed.narrow(0, 0, t)                                  // (B, T, D)
            : x + pos_embed.index_select(0, positions.reshape(-1)).view(b, t, -1); // (B, T, D)
    }

    /// <summary>Normed [Y₁; Y₂] to logits, (B, T, 2D) → (B, T, V): for generation and scoring (training uses the chunked loss).</summary>
    private Tensor Logits(Tensor hidden) => nn.functional.linear(final_norm.forward(hidden), lm_head); // (B, T, V)

    private long NextLshStep()
    {
        using var noGrad = no_grad();
        long step = lsh_step.item<long>();
        lsh_step.add_(1);
        return step;
    }

    // SplitMix64 of the three, so that nearby steps and layers get unrelated rotations.
    private static long MixSeed(long seed, long step, int layer)
    {
        unchecked
        {
            ulong z = (ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)step * 0xBF58476D1CE4E5B9UL ^ (ulong)layer * 0x94D049BB133111EBUL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return (long)(z ^ (z >> 31));
        }
    }

    /// <inheritdoc />
    public override long ActiveParameterCount => ParameterCount;

    /// <inheritdoc />
    /// <remarks>
    /// 6 · N for the matmul parameters (embedding tables are lookups) plus attention's 12 · L · H · Dh · W per
    /// token, where W is the keys a query scores: T for full attention; for LSH, rounds · 2 · chunk length.
    /// </remarks>
    public override double FlopsPerToken(int sequenceLength)
    {
        long matmul = ParameterCount - embed.NumberOfElements - pos_embed.NumberOfElements;
        int window = options.Attention == ReformerAttentionKind.Full
            ? sequenceLength
            : Math.Min(sequenceLength, options.LshRounds * 2 * options.LshChunkLength);
        return ModelFlops.PerToken(matmul, options.NumLayers, options.NumHeads, options.HeadDim, window);
    }
}
