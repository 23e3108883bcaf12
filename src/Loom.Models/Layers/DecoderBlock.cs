using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// One decoder block. Parallel (PaLM): y = x + Attn(LN x) + MLP(LN x), one norm shared by both
/// branches. Serial (GPT): h = x + Attn(LN₁ x); y = h + MLP(LN₂ h).
/// </summary>
public sealed class DecoderBlock : nn.Module<Tensor, Tensor>
{
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly nn.Module<Tensor, Tensor>? mlp_norm;
    private readonly Attention attn;
    private readonly nn.Module mlp; // a dense Mlp or an MoeMlp
    private readonly int layer;

    /// <summary>
    /// Creates block number <paramref name="layer"/> around an attention layer and a feed-forward layer
    /// (a dense <see cref="Mlp"/> or an <see cref="MoeMlp"/>); <paramref name="parallel"/> chooses PaLM's block.
    /// </summary>
    public DecoderBlock(int layer, Attention attention, nn.Module feedForward, Func<nn.Module<Tensor, Tensor>> norms, bool parallel)
        : base(nameof(DecoderBlock))
    {
        ArgumentNullException.ThrowIfNull(norms);
        this.layer = layer;
        norm = norms();
        mlp_norm = parallel ? null : norms();
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
        if (mlp_norm is null)
        {
            var h = norm.forward(x);                                                            // (B, T, D)
            return x + attn.Forward(h, layer, context) + MoeTrace.FeedForward(mlp, h, trace);    // (B, T, D)
        }
        x = x + attn.Forward(norm.forward(x), layer, context);                                  // (B, T, D)
        return x + MoeTrace.FeedForward(mlp, mlp_norm.forward(x), trace);                       // (B, T, D)
    }
}
