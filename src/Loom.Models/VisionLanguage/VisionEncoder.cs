using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.VisionLanguage;

/// <summary>
/// A ViT (Dosovitskiy et al. 2021) for greyscale images: the image cut into P×P patches in row-major order, each
/// flattened and embedded linearly, plus learned position embeddings, then pre-norm Transformer blocks whose
/// attention sees every patch (the decoder's <see cref="DecoderBlock"/> with LayerNorm, serial, GELU MLP, no mask),
/// and a final LayerNorm.
/// </summary>
public sealed class VisionEncoder : nn.Module<Tensor, Tensor>
{
    private readonly Dense patch_embed;        // (Dv, P·P)
    private readonly Parameter pos_embed;      // (N, Dv)
    private readonly ModuleList<DecoderBlock> blocks;
    private readonly nn.Module<Tensor, Tensor> final_norm;
    private readonly int patchSize;

    /// <summary>Creates the encoder; initial values come from <paramref name="generator"/>.</summary>
    public VisionEncoder(VisionLanguageOptions options, Device? device = null, Generator? generator = null) : base(nameof(VisionEncoder))
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options;
        patchSize = o.PatchSize;
        patch_embed = new Dense(o.PatchSize * o.PatchSize, o.VisionDim, useBias: true, device, generator);
        pos_embed = new Parameter(empty(o.TokensPerImage, o.VisionDim, device: device));
        Initializers.Normal(pos_embed, 0.02, generator);
        nn.Module<Tensor, Tensor> Norm() => Norms.Create(NormKind.LayerNorm, o.VisionDim, 1e-6, useBias: true, device);
        int headDim = o.VisionDim / o.VisionHeads;
        blocks = new ModuleList<DecoderBlock>([.. Enumerable.Range(0, o.VisionLayers).Select(l => new DecoderBlock(l,
            new Attention(o.VisionDim, o.VisionHeads, o.VisionHeads, headDim, useBias: true, rotary: null, device, generator),
            new Mlp(o.VisionDim, o.VisionMlpDim, MlpActivation.Gelu, useBias: true, device, generator),
            Norm, parallel: false))]);
        final_norm = Norm();
        RegisterComponents();
    }

    /// <summary>
    /// Cuts images, (M, H, W), into patches, (M, N, P·P): patch n = (row r, column c) of the grid is n = r · (W/P) + c,
    /// its pixels row-major.
    /// </summary>
    public static Tensor Patchify(Tensor images, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(images);
        long m = images.shape[0], h = images.shape[1], w = images.shape[2];
        long gh = h / patchSize, gw = w / patchSize;
        return images.reshape(m, gh, patchSize, gw, patchSize) // (M, H/P, P, W/P, P)
            .permute(0, 1, 3, 2, 4)                            // (M, H/P, W/P, P, P)
            .reshape(m, gh * gw, patchSize * patchSize);       // (M, N, P·P)
    }

    /// <summary>Encodes images, (M, H, W) in [0, 1], into patch features, (M, N, Dv).</summary>
    public override Tensor forward(Tensor images)
    {
        var patches = Patchify(images * 2 - 1, patchSize);     // (M, N, P·P) in [-1, 1]
        var x = patch_embed.forward(patches) + pos_embed;      // (M, N, Dv)
        using var context = new Bidirectional(x.shape[0], x.shape[1], x.device);
        foreach (var block in blocks) x = block.Forward(x, context); // (M, N, Dv)
        return final_norm.forward(x);                          // (M, N, Dv)
    }

    /// <summary>Every patch attends to every patch of its image: no mask, no cache.</summary>
    private sealed class Bidirectional(long batch, long length, Device device) : IAttentionContext, IDisposable
    {
        public Tensor Positions { get; } = arange(length, int64, device).expand(batch, length); // (M, N), unused without rotary

        public AttentionInputs Attend(int layer, Tensor keys, Tensor values) => new(keys, values, null, IsCausal: false);

        public void Dispose() => Positions.Dispose();
    }
}
