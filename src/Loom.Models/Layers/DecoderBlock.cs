using Loom.Distributed;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// One decoder block. Parallel (PaLM): y = x + Attn(LN x) + MLP(LN x), one norm shared by both
/// branches. Serial (GPT): h = x + Attn(LN₁ x); y = h + MLP(LN₂ h). Serial with post-norms (Gemma 2):
/// h = x + LN₂(Attn(LN₁ x)); y = h + LN₄(MLP(LN₃ h)).
/// </summary>
public sealed class DecoderBlock : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly nn.Module<Tensor, Tensor>? mlp_norm;
    private readonly nn.Module<Tensor, Tensor>? post_attn_norm; // post-norms only
    private readonly nn.Module<Tensor, Tensor>? post_mlp_norm;  // post-norms only
    private readonly Attention attn;
    private readonly nn.Module mlp; // a dense Mlp or an MoeMlp
    private readonly int layer;
    private ICommunicator? modelGroup; // set by UseTensorParallel
    private bool attentionSharded, mlpSharded;

    /// <summary>
    /// Creates block number <paramref name="layer"/> around an attention layer and a feed-forward layer
    /// (a dense <see cref="Mlp"/> or an <see cref="MoeMlp"/>); <paramref name="parallel"/> chooses PaLM's block,
    /// <paramref name="postNorms"/> Gemma 2's norms on each sublayer's output (serial blocks only).
    /// </summary>
    public DecoderBlock(int layer, Attention attention, nn.Module feedForward, Func<nn.Module<Tensor, Tensor>> norms, bool parallel, bool postNorms = false)
        : base(nameof(DecoderBlock))
    {
        ArgumentNullException.ThrowIfNull(norms);
        if (parallel && postNorms) throw new ArgumentException("post-norms need a serial block", nameof(postNorms));
        this.layer = layer;
        norm = norms();
        mlp_norm = parallel ? null : norms();
        post_attn_norm = postNorms ? norms() : null;
        post_mlp_norm = postNorms ? norms() : null;
        attn = attention ?? throw new ArgumentNullException(nameof(attention));
        mlp = feedForward ?? throw new ArgumentNullException(nameof(feedForward));
        RegisterComponents();
    }

    /// <summary>The feed-forward layer (a dense MLP or a mixture of experts).</summary>
    public nn.Module FeedForward => mlp;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>
    /// Applies the block to x, (B, T, D), within an attention context (a KV-cache step, packed rows, or
    /// none); a mixture-of-experts layer reports its routing to <paramref name="trace"/>.
    /// </summary>
    public Tensor Forward(Tensor x, IAttentionContext? context, MoeTrace? trace = null)
    {
        if (modelGroup is not null) return ForwardTensorParallel(x, context, trace, modelGroup);
        if (mlp_norm is null)
        {
            var h = norm.forward(x);                                                            // (B, T, D)
            return Residual.Add(Residual.Add(x, attn.Forward(h, layer, context)), MoeTrace.FeedForward(mlp, h, trace)); // (B, T, D)
        }
        x = Residual.Add(x, PostNorm(post_attn_norm, attn.Forward(norm.forward(x), layer, context)));        // (B, T, D)
        return Residual.Add(x, PostNorm(post_mlp_norm, MoeTrace.FeedForward(mlp, mlp_norm.forward(x), trace))); // (B, T, D)
    }

    /// <summary>A sublayer's output, (B, T, D), through its post-norm when the block has them.</summary>
    private static Tensor PostNorm(nn.Module<Tensor, Tensor>? postNorm, Tensor y) => postNorm is null ? y : postNorm.forward(y);

    /// <summary>
    /// Splits the block over the model group (Megatron-style): the attention's heads when <paramref name="heads"/>
    /// (its key/value heads too when <paramref name="keysAndValues"/>; else multi-query K/V stay replicated) and the
    /// MLP's hidden units when <paramref name="mlpUnits"/>. Returns the replicated parameters whose gradients the group
    /// must sum (replicated K/V under sharded heads: each rank's queries reach them).
    /// </summary>
    /// <exception cref="ArgumentException">A split is uneven, or the feed-forward layer is a mixture of experts.</exception>
    public IReadOnlyList<TorchSharp.Modules.Parameter> UseTensorParallel(ICommunicator group, bool heads, bool keysAndValues, bool mlpUnits)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (mlpUnits && mlp is not Mlp) throw new ArgumentException("tensor parallelism does not split mixture-of-experts layers yet: set parallelism.model = 1 (train MoE models data parallel)");
        var partial = new List<TorchSharp.Modules.Parameter>();
        if (heads)
        {
            var kvBefore = attn.named_parameters().Where(p => p.name.StartsWith("wk.", StringComparison.Ordinal) || p.name.StartsWith("wv.", StringComparison.Ordinal)).Select(p => p.parameter).ToList();
            attn.Shard(group.Rank, group.WorldSize, keysAndValues);
            if (!keysAndValues) partial.AddRange(kvBefore);
        }
        if (mlpUnits) ((Mlp)mlp).Shard(group.Rank, group.WorldSize);
        (modelGroup, attentionSharded, mlpSharded) = (group, heads, mlpUnits);
        return partial;
    }

    /// <summary>
    /// The block with sharded sublayers: each enters the model-parallel region from the replicated normed input and
    /// leaves it with an all-reduce of its partial output; the parallel block sums both branches first, so a layer
    /// costs one all-reduce forward and one backward, not two (Pope et al. 2022). Output biases are added once, after.
    /// </summary>
    private Tensor ForwardTensorParallel(Tensor x, IAttentionContext? context, MoeTrace? trace, ICommunicator group)
    {
        if (mlp_norm is null)
        {
            var h = norm.forward(x);                                                     // (B, T, D), replicated
            var entered = ModelParallelRegion.Enter(h, group);                           // (B, T, D)
            Tensor? partial = null;
            var y = x;
            if (attentionSharded) partial = attn.Forward(entered, layer, context, addOutputBias: false);
            else y = Residual.Add(y, attn.Forward(h, layer, context));
            if (mlpSharded) partial = Add(partial, ((Mlp)mlp).Forward(entered, addOutputBias: false));
            else y = Residual.Add(y, MoeTrace.FeedForward(mlp, h, trace));
            if (partial is not null) y = Residual.Add(y, ModelParallelRegion.Exit(partial, group));  // the layer's one all-reduce
            if (attentionSharded) y = AddBias(y, attn.OutputBias);
            return mlpSharded ? AddBias(y, ((Mlp)mlp).OutputBias) : y;                  // (B, T, D)
        }
        var a = norm.forward(x);                                                         // (B, T, D)
        if (post_attn_norm is not null && post_mlp_norm is not null)
        {
            // Post-norms see each sublayer's whole output: gathered and biased before the norm, then added.
            var attended = attentionSharded
                ? AddBias(ModelParallelRegion.Exit(attn.Forward(ModelParallelRegion.Enter(a, group), layer, context, addOutputBias: false), group), attn.OutputBias)
                : attn.Forward(a, layer, context);                                       // (B, T, D)
            x = Residual.Add(x, post_attn_norm.forward(attended));                                    // (B, T, D)
            var normed = mlp_norm.forward(x);                                            // (B, T, D)
            var fed = mlpSharded
                ? AddBias(ModelParallelRegion.Exit(((Mlp)mlp).Forward(ModelParallelRegion.Enter(normed, group), addOutputBias: false), group), ((Mlp)mlp).OutputBias)
                : MoeTrace.FeedForward(mlp, normed, trace);                              // (B, T, D)
            return Residual.Add(x, post_mlp_norm.forward(fed));                                       // (B, T, D)
        }
        x = attentionSharded
            ? AddBias(Residual.Add(x, ModelParallelRegion.Exit(attn.Forward(ModelParallelRegion.Enter(a, group), layer, context, addOutputBias: false), group)), attn.OutputBias)
            : Residual.Add(x, attn.Forward(a, layer, context));                                       // (B, T, D)
        var m = mlp_norm.forward(x);                                                     // (B, T, D)
        return mlpSharded
            ? AddBias(Residual.Add(x, ModelParallelRegion.Exit(((Mlp)mlp).Forward(ModelParallelRegion.Enter(m, group), addOutputBias: false), group)), ((Mlp)mlp).OutputBias)
            : Residual.Add(x, MoeTrace.FeedForward(mlp, m, trace));                                   // (B, T, D)
    }

    private static Tensor AddBias(Tensor y, Tensor? bias) => bias is null ? y : Residual.Add(y, bias);

    private static Tensor Add(Tensor? a, Tensor b) => a is null ? b : Residual.Add(a, b);
}
