using Loom.Models.Layers;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Reformer;

/// <summary>
/// A Reformer block's F: pre-norm multi-head shared-QK attention, out = W_o · Attn(qk = W_qk·N(x), v = W_v·N(x)).
/// Attention is LSH (<see cref="LshAttention"/>) or full (<see cref="SharedQkAttention.Full"/>) in a context-free
/// forward; against an <see cref="IAttentionContext"/> (cached decoding, an engine's paged cache) it is full
/// shared-QK attention over every key the context hands back, which LSH approximates.
/// </summary>
/// <remarks>
/// The seed of the LSH rotations and the packed rows' segment ids are per-call state set by the model
/// (<see cref="Prepare"/>) and replayed by a <see cref="ReversibleStack"/> when its backward recomputes this layer
/// (<see cref="IReplayableLayer"/>), so the recomputation hashes with the forward's rotations.
/// </remarks>
public sealed class ReformerAttention : nn.Module<Tensor, Tensor>, IReplayableLayer
{
    // Field names are the state-dict keys.
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly Dense wqk; // (H·Dh, D)
    private readonly Dense wv;  // (H·Dh, D)
    private readonly Dense wo;  // (D, H·Dh)
    private readonly LshAttention? lsh;
    private readonly int heads, headDim;
    private CallState state = new(0, null);

    /// <summary>Creates the layer; initial weights come from <paramref name="generator"/>.</summary>
    /// <param name="o">The model's validated options (width, heads, attention kind, LSH settings).</param>
    /// <param name="device">Where the weights live (meta: shapes only).</param>
    /// <param name="generator">A CPU generator for the initial weights (torch's default when null).</param>
    public ReformerAttention(ReformerOptions o, Device? device = null, Generator? generator = null) : base(nameof(ReformerAttention))
    {
        ArgumentNullException.ThrowIfNull(o);
        heads = o.NumHeads;
        headDim = o.HeadDim;
        norm = Norms.Create(o.Norm, o.ModelDim, o.NormEpsilon, useBias: true, device);
        wqk = new Dense(o.ModelDim, heads * headDim, useBias: false, device, generator, (LogicalAxes.Heads, LogicalAxes.Embed));
        wv = new Dense(o.ModelDim, heads * headDim, useBias: false, device, generator, (LogicalAxes.Heads, LogicalAxes.Embed));
        wo = new Dense(heads * headDim, o.ModelDim, useBias: false, device, generator, (LogicalAxes.Embed, LogicalAxes.Heads));
        RegisterComponents();
        lsh = o.Attention == ReformerAttentionKind.Lsh ? new LshAttention(o.LshBuckets, o.LshRounds, o.LshChunkLength, causal: true) : null;
    }

    private sealed record CallState(long Seed, Tensor? Segments);

    /// <summary>Sets the rotation seed and the segment ids, (B, T) or null, of the next context-free forwards.</summary>
    public void Prepare(long seed, Tensor? segments) => state = new CallState(seed, segments);

    /// <inheritdoc />
    public object CaptureState() => state;

    /// <inheritdoc />
    public void RestoreState(object captured) => state = (CallState)captured;

    /// <summary>Causal attention over x, (B, T, D), as one sequence per row (or packed rows, see <see cref="Prepare"/>): (B, T, D).</summary>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var (qk, v) = Project(x);                                                   // (B, H, T, Dh) x 2
        Tensor y;
        if (lsh is null)
        {
            y = SharedQkAttention.Full(qk, v, causal: true, state.Segments?.unsqueeze(1)); // (B, H, T, Dh); segments as buckets
        }
        else
        {
            using var rotations = new Generator(unchecked((ulong)state.Seed));
            y = lsh.Forward(qk, v, rotations, state.Segments);                      // (B, H, T, Dh)
        }
        return wo.forward(y.transpose(1, 2).reshape(b, t, heads * headDim));        // (B, T, D)
    }

    /// <summary>
    /// Attention of new tokens x, (B, T, D), over what <paramref name="context"/> holds for <paramref name="layer"/>
    /// (the new tokens' unit-length keys and values are handed to it first): full shared-QK attention with the
    /// Reformer's rules (a token's own key scores <see cref="SharedQkAttention.SelfScore"/>). (B, T, D).
    /// </summary>
    public Tensor Forward(Tensor x, int layer, IAttentionContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        long b = x.shape[0], t = x.shape[1];
        var (qk, v) = Project(x);                                                   // (B, H, T, Dh) x 2
        var inputs = context.Attend(layer, SharedQkAttention.Keys(qk), v);         // keys (B, H, S, Dh), unit length
        long s = inputs.Keys.shape[2];
        var scores = qk.matmul(inputs.Keys.to(qk.dtype).transpose(-1, -2)) / Math.Sqrt(headDim); // (B, H, T, S)
        var allowed = inputs.Mask ?? (inputs.IsCausal ? KvCache.CausalMask(t, s - t, x.device) : null); // (B, 1, T, S), (T, S) or all
        var keyPositions = (inputs.KeyPositions ?? arange(s, dtype: ScalarType.Int64, device: x.device).unsqueeze(0)).unsqueeze(1).unsqueeze(1); // (B or 1, 1, 1, S)
        var self = keyPositions.eq(context.Positions.unsqueeze(1).unsqueeze(-1));  // (B, 1, T, S)
        if (allowed is not null) self = self.logical_and(allowed);
        scores = scores.masked_fill(self, SharedQkAttention.SelfScore);
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), SharedQkAttention.MaskedScore);
        var y = scores.softmax(-1).matmul(inputs.Values.to(qk.dtype));             // (B, H, T, Dh)
        return wo.forward(y.transpose(1, 2).reshape(b, t, heads * headDim));        // (B, T, D)
    }

    private (Tensor Qk, Tensor V) Project(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var h = norm.forward(x);                                                   // (B, T, D)
        var qk = wqk.forward(h).view(b, t, heads, headDim).transpose(1, 2);        // (B, H, T, Dh)
        var v = wv.forward(h).view(b, t, heads, headDim).transpose(1, 2);          // (B, H, T, Dh)
        return (qk, v);
    }
}

/// <summary>A Reformer block's G before chunking: pre-norm feed-forward, MLP(N(x)), (B, T, D) → (B, T, D).</summary>
public sealed class PreNormFeedForward : nn.Module<Tensor, Tensor>
{
    // Field names are the state-dict keys.
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly Mlp mlp;

    /// <summary>Creates the layer; initial weights come from <paramref name="generator"/>.</summary>
    public PreNormFeedForward(ReformerOptions o, Device? device = null, Generator? generator = null) : base(nameof(PreNormFeedForward))
    {
        ArgumentNullException.ThrowIfNull(o);
        norm = Norms.Create(o.Norm, o.ModelDim, o.NormEpsilon, useBias: true, device);
        mlp = new Mlp(o.ModelDim, o.MlpDim, o.Activation, useBias: true, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => mlp.forward(norm.forward(x)); // (B, T, D)
}
