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
    private readonly Mlp mlp;
    private readonly int layer;

    /// <summary>Creates block number <paramref name="layer"/>; initial values come from <paramref name="generator"/> (torch's default when null).</summary>
    public DecoderBlock(DecoderLmOptions o, int layer, Rotary? rotary, Device? device = null, Generator? generator = null) : base(nameof(DecoderBlock))
    {
        this.layer = layer;
        norm = Norms.Create(o, device);
        mlp_norm = o.ParallelBlock ? null : Norms.Create(o, device);
        attn = new Attention(o, rotary, device, generator);
        mlp = new Mlp(o, device, generator);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null, null);

    /// <summary>Applies the block to x, (B, T, D), optionally against a KV cache or within packed rows.</summary>
    public Tensor Forward(Tensor x, KvCache? cache, IAttentionContext? context = null)
    {
        if (mlp_norm is null)
        {
            var h = norm.forward(x);
            return x + attn.Forward(h, cache, layer, context) + mlp.forward(h);
        }
        x = x + attn.Forward(norm.forward(x), cache, layer, context);
        return x + mlp.forward(mlp_norm.forward(x));
    }
}
