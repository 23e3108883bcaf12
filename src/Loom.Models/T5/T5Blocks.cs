using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// T5.1.1's gated-GELU feed-forward layer (Shazeer 2020, "GLU Variants"): wo(gelu(x wi_0) · (x wi_1)),
/// no biases, with the tanh approximation of GELU as T5.1.1 uses it (<c>gelu_new</c>), and dropout on the
/// hidden units while training.
/// </summary>
public sealed class T5Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Dense wi_0; // (F, D), the gate
    private readonly Dense wi_1; // (F, D), the linear branch
    private readonly Dense wo;   // (D, F)
    private readonly double dropoutRate;

    /// <summary>Creates the layer: wi ~ N(0, D^-0.5), wo ~ N(0, F^-0.5) (<see cref="Dense"/>'s 1/√fan_in, as Mesh TensorFlow's T5).</summary>
    public T5Mlp(int modelDim, int mlpDim, double dropoutRate, Device? device = null, Generator? generator = null) : base(nameof(T5Mlp))
    {
        wi_0 = new Dense(modelDim, mlpDim, useBias: false, device, generator);
        wi_1 = new Dense(modelDim, mlpDim, useBias: false, device, generator);
        wo = new Dense(mlpDim, modelDim, useBias: false, device, generator);
        this.dropoutRate = dropoutRate;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) // (B, T, D)
    {
        var h = wi_0.forward(x).gelu(GELU.Approximate.tanh) * wi_1.forward(x); // (B, T, F)
        h = nn.functional.dropout(h, dropoutRate, training);                   // (B, T, F)
        return wo.forward(h);                                                  // (B, T, D)
    }
}

/// <summary>
/// One T5 block, pre-norm with residuals (Raffel et al. 2020, §2.1): self-attention, then (decoder only)
/// cross-attention to the encoder memory, then the feed-forward layer; each sublayer reads RMSNorm(x)
/// and adds its dropped-out output to x.
/// </summary>
public sealed class T5Block : nn.Module<Tensor, Tensor>
{
    private readonly RmsNorm self_attn_norm;
    private readonly T5Attention self_attn;
    private readonly RmsNorm? cross_attn_norm;
    private readonly T5Attention? cross_attn;
    private readonly RmsNorm mlp_norm;
    private readonly nn.Module mlp; // a dense T5Mlp or an MoeMlp
    private readonly int layer;
    private readonly double dropoutRate;

    /// <summary>Creates block <paramref name="layer"/> of its stack; with <paramref name="crossAttention"/> it is a decoder block.</summary>
    public T5Block(int layer, T5Attention selfAttention, T5Attention? crossAttention, nn.Module feedForward, int modelDim, double normEpsilon, double dropoutRate, Device? device = null)
        : base(nameof(T5Block))
    {
        this.layer = layer;
        this.dropoutRate = dropoutRate;
        self_attn_norm = new RmsNorm(modelDim, normEpsilon, device);
        self_attn = selfAttention ?? throw new ArgumentNullException(nameof(selfAttention));
        if (crossAttention is not null)
        {
            cross_attn_norm = new RmsNorm(modelDim, normEpsilon, device);
            cross_attn = crossAttention;
        }
        mlp_norm = new RmsNorm(modelDim, normEpsilon, device);
        mlp = feedForward ?? throw new ArgumentNullException(nameof(feedForward));
        RegisterComponents();
    }

    /// <summary>The feed-forward layer (the seam where a mixture of experts replaces the dense MLP).</summary>
    public nn.Module FeedForward => mlp;

    /// <summary>The cross-attention layer (decoder blocks), or null.</summary>
    public T5Attention? CrossAttention => cross_attn;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null, new StackMasks(null, null));

    /// <summary>
    /// Applies the block to x, (B, T, D): self-attention within <paramref name="context"/>, cross-attention
    /// to <paramref name="context"/>'s encoder memory (decoder blocks), and the MLP (a mixture of experts
    /// reports its routing to <paramref name="trace"/>).
    /// </summary>
    public Tensor Forward(Tensor x, IAttentionContext? context, StackMasks masks, MoeTrace? trace = null)
    {
        long t = x.shape[1];
        var h = self_attn_norm.forward(x);                                                      // (B, T, D)
        x = x + Drop(self_attn.SelfAttend(h, layer, context, inputs => masks.Self(inputs, t, x.dtype))); // (B, T, D)
        if (cross_attn is not null)
        {
            var memory = (context ?? throw NoMemory()).CrossAttend(layer);                      // keys (B, H, S, Dh)
            h = cross_attn_norm!.forward(x);                                                    // (B, T, D)
            x = x + Drop(cross_attn.CrossAttend(h, memory, masks.Cross(memory, t, x.dtype)));   // (B, T, D)
        }
        return x + Drop(MoeTrace.FeedForward(mlp, mlp_norm.forward(x), trace));                 // (B, T, D)
    }

    private Tensor Drop(Tensor x) => nn.functional.dropout(x, dropoutRate, training);

    internal static NotSupportedException NoMemory() =>
        new("a T5 decoder needs the encoder memory: run it through a KvCache whose Memory is set from model.Encode(inputs), or Forward(FeatureBatch) with the encoder inputs");
}

/// <summary>
/// The additive masks every layer of one stack shares during one forward: the self-attention mask with
/// the stack's relative position bias, and the cross-attention mask. Each is computed from the first
/// layer's <see cref="AttentionInputs"/> (a context hands every layer of a step the same mask and key
/// positions) and reused by the rest.
/// </summary>
/// <param name="bias">The stack's relative position bias, or null (no bias).</param>
/// <param name="queryPositions">Positions of the queries, (B or 1, T), or null for 0..T-1.</param>
public sealed class StackMasks(RelativePositionBias? bias, Tensor? queryPositions)
{
    private Tensor? self, cross;

    /// <summary>The self-attention mask for <paramref name="inputs"/>, (B or 1, H, T, S): bias plus mask.</summary>
    public Tensor Self(AttentionInputs inputs, long t, ScalarType dtype)
    {
        if (self is not null) return self;
        var device = inputs.Keys.device;
        long s = inputs.Keys.shape[2];
        var queries = queryPositions ?? arange(t, dtype: int64, device: device).unsqueeze(0);   // (B or 1, T)
        var keys = inputs.KeyPositions ?? arange(s, dtype: int64, device: device).unsqueeze(0); // (B or 1, S)
        return self = T5Attention.AdditiveMask(inputs, t, bias?.forward(queries, keys), dtype);  // (B or 1, H, T, S)
    }

    /// <summary>The cross-attention mask of the encoder memory, (B, 1, 1 or T, S): no position bias.</summary>
    public Tensor Cross(AttentionInputs memory, long t, ScalarType dtype) =>
        cross ??= T5Attention.AdditiveMask(memory, t, null, dtype);
}
