using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Distributed;
using Loom.Models.Kernels;
using Loom.Models.Layers;
using Loom.Models.Parallelism;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// A decoder-only Transformer language model (PaLM family): token embedding, a stack of
/// <see cref="DecoderBlock"/>s, a final norm and an output projection (the transposed embedding
/// when shared). Embedding, stack and head are separate steps (<see cref="Embed"/>,
/// <see cref="Blocks"/>, <see cref="Head"/>), so that other encoders can feed embeddings in. The
/// model holds no generation state: callers pass an <see cref="IAttentionContext"/> that owns the cache.
/// </summary>
public sealed class DecoderLm : LanguageModel
{
    private readonly Parameter embed;      // (V, D)
    private readonly Parameter? pos_embed; // (maxLen, D), learned positions only
    private readonly Rotary? rotary;
    private readonly ModuleList<DecoderBlock> blocks;
    private readonly nn.Module<Tensor, Tensor> final_norm;
    private readonly Dense? lm_head;       // (V, D), unshared embeddings only
    private readonly DecoderLmOptions options;

    /// <summary>
    /// Builds the model with PaLM's initialisation on <paramref name="device"/> (meta: shapes only),
    /// drawing from <paramref name="generator"/> (a CPU generator; values are drawn on the CPU and copied
    /// to the device) so that the weights depend only on its seed, not on the device nor on anything
    /// else using torch's default generator; null uses the default.
    /// </summary>
    public DecoderLm(DecoderLmOptions options, Device? device = null, Generator? generator = null) : base(nameof(DecoderLm))
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        var o = this.options;
        embed = new Parameter(empty(o.VocabSize, o.ModelDim, device: device));
        Initializers.Normal(embed, 1, generator); // PaLM: N(0, 1), since no norm follows the embedding
        if (o.Positions == PositionEncoding.Learned)
        {
            pos_embed = new Parameter(empty(o.MaxSequenceLength, o.ModelDim, device: device));
            Initializers.Normal(pos_embed, 1, generator);
        }
        else
        {
            rotary = new Rotary(o.HeadDim, o.MaxSequenceLength, o.RopeBase, device, o.RopeScaling);
        }
        nn.Module<Tensor, Tensor> Norm() => Norms.Create(o.Norm, o.ModelDim, o.NormEpsilon, o.UseBias, device, o.NormUnitOffset);
        double? scoreScale = o.QueryPreAttnScalar is { } scalar ? Math.Pow(scalar, -0.5) : null; // as transformers: scalar ** -0.5
        blocks = new ModuleList<DecoderBlock>(Enumerable.Range(0, o.NumLayers).Select(l => new DecoderBlock(
            l,
            new Attention(o.ModelDim, o.NumHeads, o.NumKvHeads, o.HeadDim, o.UseBias, rotary, device, generator, scoreScale, o.AttentionLogitSoftcap,
                o.AttentionImpl == AttentionImpl.Blockwise ? o.AttentionBlockSize : null),
            FeedForward(o, l, device, generator),
            Norm, o.ParallelBlock, o.PostNorms)).ToArray());
        final_norm = Norm();
        lm_head = o.SharedEmbeddings ? null : new Dense(o.ModelDim, o.VocabSize, useBias: false, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    /// <remarks>Typed as the base record: a covariant override would give the module two properties of one name, which TorchSharp's <c>to()</c> cannot map.</remarks>
    public override ModelOptions Options => options;

    /// <summary>Layer <paramref name="layer"/>'s feed-forward sublayer: a dense MLP, or a mixture of experts where <see cref="MoeOptions.IsMoeLayer"/> says so.</summary>
    private static nn.Module FeedForward(DecoderLmOptions o, int layer, Device? device, Generator? generator) =>
        o.Moe is { } moe && moe.IsMoeLayer(layer)
            ? new MoeMlp(o.ModelDim, o.MlpDim, moe.NumExperts, moe.TopK, moe.CapacityFactor, o.Activation, o.UseBias, device, generator)
            : new Mlp(o.ModelDim, o.MlpDim, o.Activation, o.UseBias, device, generator);

    /// <summary>The validated decoder options the model was built from.</summary>
    public DecoderLmOptions DecoderOptions => options;

    /// <inheritdoc />
    public override KvCacheShape KvCacheShape => new(options.NumLayers, options.NumKvHeads, options.HeadDim);

    /// <summary>Logits for every position of <paramref name="tokens"/>, (B, T) -> (B, T, V), as one causal sequence per row.</summary>
    public Tensor forward(Tensor tokens) => Forward(tokens, null);

    /// <inheritdoc />
    public override Tensor Forward(Tensor tokens, IAttentionContext? context) => Forward(tokens, context, null);

    private Tensor Forward(Tensor tokens, IAttentionContext? context, MoeTrace? trace)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (context is null && tokens.size(1) > options.MaxSequenceLength)
            throw new ArgumentException($"sequence of {tokens.shape[1]} tokens exceeds model.max_sequence_length = {options.MaxSequenceLength}");
        return Head(Blocks(Embed(tokens, context), context, trace)); // (B, T, V)
    }

    /// <inheritdoc />
    public override ModelOutput Forward(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var context = features.SegmentIds is { } segments
            ? new PackedLayout(segments, features.Positions ?? throw new ArgumentException($"packed rows need \"{FeatureNames.DecoderPositions}\" beside their segment ids"),
                features.Find(FeatureNames.DecoderCausalAttention))
            : null;
        // Padding (segment 0) takes no expert slot and counts in no routing loss.
        var trace = new MoeTrace(features.SegmentIds?.ne(0));
        var logits = Forward(features.Inputs, context, trace); // (B, T, V)
        var (auxiliary, statistics) = MoeTrace.Summarize(options.Moe, trace);
        return new ModelOutput(logits, auxiliary, statistics);
    }

    /// <summary>Token (and learned position) embeddings of <paramref name="tokens"/>, (B, T) -> (B, T, D).</summary>
    public Tensor Embed(Tensor tokens, IAttentionContext? context)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        long b = tokens.size(0), t = tokens.size(1);
        var x = embed.index_select(0, tokens.reshape(-1)).view(b, t, -1); // (B, T, D)
        // Gemma: × √D rounded to the embedding's dtype, as transformers' normalizer tensor is.
        if (options.ScaleEmbeddings) x = x * tensor(Math.Sqrt(options.ModelDim), x.dtype, x.device);
        if (pos_embed is null) return x;
        return context is null
            ? x + pos_embed.narrow(0, 0, t)                                                       // (B, T, D)
            : x + pos_embed.index_select(0, context.Positions.reshape(-1)).view(b, t, -1);        // (B, T, D)
    }

    /// <summary>The block stack over embeddings, (B, T, D) -> (B, T, D), within an attention context; MoE layers report to <paramref name="trace"/>.</summary>
    public Tensor Blocks(Tensor x, IAttentionContext? context, MoeTrace? trace = null)
    {
        foreach (var block in blocks) x = block.Forward(x, context, trace); // (B, T, D)
        return x;
    }

    /// <summary>Final norm, output projection and (Gemma 2) the logits' soft cap, (B, T, D) -> (B, T, V).</summary>
    public Tensor Head(Tensor x)
    {
        x = final_norm.forward(x);                                          // (B, T, D)
        var logits = lm_head is not null
            ? lm_head.forward(x)                                            // (B, T, V)
            : SharedHead(x);                                                 // (B, T, V)
        return options.FinalLogitSoftcap is { } cap ? (logits / cap).tanh() * cap : logits; // (B, T, V) in (-cap, cap)
    }

    /// <summary>The transposed embedding as output projection (scaled by 1/√D unless the options say not), in the compute dtype: (B, T, D) -> (B, T, V).</summary>
    private Tensor SharedHead(Tensor x)
    {
        var logits = Precision.Dtype() is { } dtype
            ? nn.functional.linear(x.to(dtype), embed.to(dtype)) // mixed precision: the float32 table cast at use
            : Float32Linear.Linear(x, embed, null);                // (B, T, V)
        return options.ScaleSharedLogits ? logits / Math.Sqrt(options.ModelDim) : logits;
    }

    /// <summary>
    /// Next-token loss of <paramref name="inputs"/> against <paramref name="targets"/>, both (B, T), as
    /// causal sequences; targets equal to <paramref name="ignoreId"/> do not count.
    /// </summary>
    public ModelLoss Loss(Tensor inputs, Tensor targets, double zLossWeight, long ignoreId = -1)
    {
        using var batch = FeatureBatch.Decoder(inputs.alias(), targets.alias(), lossWeights: targets.ne(ignoreId).to(float32));
        return Loss(batch, zLossWeight);
    }

    /// <summary>
    /// Next-token loss of rows of <paramref name="inputs"/> under an attention context (packed examples,
    /// each scored as if alone): <paramref name="targets"/> and <paramref name="lossWeights"/> are (B, T).
    /// </summary>
    public ModelLoss Loss(Tensor inputs, Tensor targets, Tensor lossWeights, IAttentionContext context, double zLossWeight) =>
        LossOfLogits(Forward(inputs, context ?? throw new ArgumentNullException(nameof(context))), targets, lossWeights, zLossWeight);

    /// <inheritdoc />
    /// <remarks>
    /// Heads and MLP units split over the model axis; multi-query keys and values (one head) stay replicated, their
    /// gradients summed over the group; the embedding, the positions, the norms and the output projection stay
    /// replicated (rules that split "vocab" or "embed" are refused).
    /// </remarks>
    protected override IReadOnlyList<Parameter> ShardLayers(ICommunicator group, PartitionRules rules)
    {
        int parts = group.WorldSize;
        var o = options;
        foreach (var axis in new[] { LogicalAxes.Vocab, LogicalAxes.Embed })
            if (rules.SplitsOverModel(axis))
                throw new ArgumentException($"partitioning.rules maps '{axis}' to the model axis, which Loom does not split yet (it splits heads, kv_heads and mlp): map '{axis}' to null");
        if (o.Moe is not null)
            throw new ArgumentException("tensor parallelism does not split mixture-of-experts layers yet: set parallelism.model = 1 (train MoE models data parallel)");
        bool heads = rules.SplitsOverModel(LogicalAxes.Heads), mlp = rules.SplitsOverModel(LogicalAxes.Mlp);
        if (heads && o.NumHeads % parts != 0)
            throw new ArgumentException($"model.num_heads = {o.NumHeads} is not divisible by parallelism.model = {parts}: choose a model axis that divides the heads, or map heads to null in partitioning.rules");
        if (mlp && o.MlpDim % parts != 0)
            throw new ArgumentException($"model.mlp_dim = {o.MlpDim} is not divisible by parallelism.model = {parts}: choose a model axis that divides it, or map mlp to null in partitioning.rules");
        bool keysAndValues = heads && o.NumKvHeads > 1;
        if (keysAndValues && (!rules.SplitsOverModel(LogicalAxes.KvHeads) || o.NumKvHeads % parts != 0))
            throw new ArgumentException(rules.SplitsOverModel(LogicalAxes.KvHeads)
                ? $"model.num_kv_heads = {o.NumKvHeads} is not divisible by parallelism.model = {parts}: use 1 (multi-query, replicated) or a multiple of {parts}"
                : $"partitioning.rules replicates kv_heads, which works only for multi-query attention (model.num_kv_heads = 1, not {o.NumKvHeads}): map kv_heads to the model axis");
        return [.. blocks.SelectMany(b => b.UseTensorParallel(group, heads, keysAndValues, mlp))];
    }

    /// <inheritdoc />
    /// <remarks>Each MoE layer counts its router and the k experts a token visits instead of all E.</remarks>
    public override long ActiveParameterCount => ParameterCount - blocks
        .Select(b => b.FeedForward).OfType<MoeMlp>().Sum(m => m.InactiveParameterCount);

    /// <summary>Parameters outside the token and position embeddings (the N of Kaplan et al.).</summary>
    public long NonEmbeddingParameterCount =>
        ParameterCount - embed.NumberOfElements - (pos_embed?.NumberOfElements ?? 0);

    /// <inheritdoc />
    public override double FlopsPerToken(int sequenceLength)
    {
        // Lookup-only tables do no matmul: learned positions always, the input embedding when untied.
        long lookupOnly = (pos_embed?.NumberOfElements ?? 0) + (lm_head is null ? 0 : embed.NumberOfElements);
        return ModelFlops.PerToken(ActiveParameterCount - lookupOnly, options.NumLayers, options.NumHeads, options.HeadDim, sequenceLength);
    }
}
