using Loom.Data;
using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Vision;

/// <summary>A k×k convolution without bias, stride 1, zero padding k/2 (the size is kept): the twin of <see cref="LocalSelfAttention2d"/>.</summary>
public sealed class Conv2dLayer : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (Cout, Cin, K, K)

    /// <summary>Creates the kernel with He initialisation N(0, 2/(Cin·K²)) drawn from <paramref name="generator"/>.</summary>
    public Conv2dLayer(int inChannels, int outChannels, int kernelSize, Device? device = null, Generator? generator = null) : base(nameof(Conv2dLayer))
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        weight = new Parameter(empty(outChannels, inChannels, kernelSize, kernelSize, device: device));
        Initializers.Normal(weight, Math.Sqrt(2.0 / (inChannels * kernelSize * kernelSize)), generator);
        RegisterComponents();
    }

    /// <summary>Cin.</summary>
    public int InChannels { get; }

    /// <summary>Cout.</summary>
    public int OutChannels { get; }

    /// <summary>K.</summary>
    public int KernelSize { get; }

    /// <summary>Forward FLOPs (multiply-adds × 2) on an <paramref name="height"/>×<paramref name="width"/> input: 2·Cin·Cout·K² per pixel.</summary>
    public long Flops(int height, int width) => 2L * InChannels * OutChannels * KernelSize * KernelSize * height * width;

    /// <summary>(B, Cin, H, W) → (B, Cout, H, W), as a matmul over im2col windows.</summary>
    /// <remarks>
    /// Not libtorch's conv2d: its CPU backward gave weight gradients that differed run to run, and now and then NaN input
    /// gradients, for these small 3×3 convolutions (a 4-channel 3×3 convolution on 14×14 maps, batch 8, same inputs each
    /// time). unfold, matmul and their backward (fold) are deterministic. A test holds this to conv2d's forward.
    /// </remarks>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var kernel = weight.view(OutChannels, -1);                                              // (Cout, Cin·K²)
        if (KernelSize == 1) return einsum("oc,bchw->bohw", kernel, x);                         // (B, Cout, H, W)
        var columns = nn.functional.unfold(x, KernelSize, padding: KernelSize / 2);             // (B, Cin·K², H·W)
        return kernel.matmul(columns).view(b, OutChannels, h, w);                               // (B, Cout, H, W)
    }

    /// <summary>The same convolution by libtorch's conv2d (the reference the tests compare with).</summary>
    public Tensor ForwardReference(Tensor x) => nn.functional.conv2d(x, weight, padding: [KernelSize / 2, KernelSize / 2]); // (B, Cout, H, W)
}

/// <summary>Group norm over (B, C, H, W) with a learned scale (ones) and shift (zeros) per channel (Wu and He 2018).</summary>
public sealed class GroupNorm2d : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (C)
    private readonly Parameter bias;   // (C)
    private readonly int groups;

    /// <summary>Normalizes <paramref name="channels"/> channels in <paramref name="groups"/> groups.</summary>
    public GroupNorm2d(int groups, int channels, Device? device = null) : base(nameof(GroupNorm2d))
    {
        this.groups = groups;
        weight = new Parameter(ones(channels, device: device));
        bias = new Parameter(zeros(channels, device: device));
        RegisterComponents();
    }

    /// <summary>(B, C, H, W) → (B, C, H, W), each group of each image at mean 0 and variance 1, then scaled and shifted.</summary>
    /// <remarks>Plain tensor ops (mean and variance over each group), so the backward is autograd's own.</remarks>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var g = x.reshape(b, groups, -1);                                          // (B, G, C/G·H·W)
        var mean = g.mean([2], keepdim: true);                                     // (B, G, 1)
        var variance = (g - mean).pow(2).mean([2], keepdim: true);                 // (B, G, 1)
        var normalized = ((g - mean) / (variance + 1e-5).sqrt()).view(b, c, h, w); // (B, C, H, W)
        return normalized * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1);       // (B, C, H, W)
    }
}

/// <summary>
/// A ResNet bottleneck block whose spatial layer is local self-attention or a convolution (the paper's replacement):
/// 1×1 reduce → spatial k×k → (2×2 average pool when downsampling) → 1×1 expand, each followed by a group norm, ReLU after
/// all but the last, plus a shortcut (pooled and projected by a 1×1 convolution when the shape changes).
/// </summary>
public sealed class BottleneckBlock : nn.Module<Tensor, Tensor>
{
    private readonly Conv2dLayer reduce;
    private readonly GroupNorm2d reduce_norm;
    private readonly nn.Module<Tensor, Tensor> spatial;
    private readonly GroupNorm2d spatial_norm;
    private readonly Conv2dLayer expand;
    private readonly GroupNorm2d expand_norm;
    private readonly Conv2dLayer? shortcut;
    private readonly GroupNorm2d? shortcut_norm;

    /// <summary>Builds the block; <paramref name="spatialLayer"/> maps inner → inner channels at the same resolution.</summary>
    public BottleneckBlock(int inChannels, int outChannels, int inner, nn.Module<Tensor, Tensor> spatialLayer, bool downsample, Device? device, Generator? generator)
        : base(nameof(BottleneckBlock))
    {
        reduce = new Conv2dLayer(inChannels, inner, 1, device, generator);
        reduce_norm = Norm(inner, device);
        spatial = spatialLayer;
        spatial_norm = Norm(inner, device);
        expand = new Conv2dLayer(inner, outChannels, 1, device, generator);
        expand_norm = Norm(outChannels, device);
        if (downsample || inChannels != outChannels)
        {
            shortcut = new Conv2dLayer(inChannels, outChannels, 1, device, generator);
            shortcut_norm = Norm(outChannels, device);
        }
        Downsample = downsample;
        RegisterComponents();
    }

    /// <summary>Whether the block halves the resolution (2×2 average pooling after its spatial layer).</summary>
    public bool Downsample { get; }

    /// <summary>The block's spatial layer.</summary>
    public nn.Module<Tensor, Tensor> Spatial => spatial;

    /// <summary>Forward FLOPs (multiply-adds × 2) of the 1×1 and spatial layers on a <paramref name="size"/>×<paramref name="size"/> input.</summary>
    public long Flops(int size)
    {
        int after = Downsample ? size / 2 : size;
        long flops = reduce.Flops(size, size) + ImageClassifier.SpatialFlops(spatial, size) + expand.Flops(after, after);
        return flops + (shortcut?.Flops(after, after) ?? 0);
    }

    /// <summary>(B, Cin, H, W) → (B, Cout, H', W'), H' = H/2 when downsampling.</summary>
    public override Tensor forward(Tensor x)
    {
        var h = nn.functional.relu(reduce_norm.forward(reduce.forward(x)));   // (B, m, H, W)
        h = nn.functional.relu(spatial_norm.forward(spatial.forward(h)));     // (B, m, H, W)
        if (Downsample) h = Pool(h);                                          // (B, m, H/2, W/2)
        h = expand_norm.forward(expand.forward(h));                           // (B, Cout, H', W')
        var skip = shortcut is null ? x : shortcut_norm!.forward(shortcut.forward(Downsample ? Pool(x) : x)); // (B, Cout, H', W')
        return nn.functional.relu(h + skip);                                  // (B, Cout, H', W')
    }

    /// <summary>2×2 average pooling, stride 2 (the paper's downsampling after attention).</summary>
    internal static Tensor Pool(Tensor x) => nn.functional.avg_pool2d(x, 2, 2);

    /// <summary>Group norm with 8 groups where the channels allow, else one (layer norm over the feature map).</summary>
    internal static GroupNorm2d Norm(int channels, Device? device) => new(channels % 8 == 0 ? 8 : 1, channels, device);
}

/// <summary>
/// The image classifier of <see cref="ImageClassifierOptions"/>: stem (spatially-aware attention stem or k×k convolution,
/// then norm, ReLU and 2×2 average pooling) → bottleneck stages (each after the first halves the resolution) → global
/// average pooling → linear head. <see cref="Forward(FeatureBatch)"/> gives class logits (B, 1, classes), so the
/// contract's <see cref="LanguageModel.Loss"/> is the cross-entropy against the class ids. It classifies; it does not
/// generate: the decoding members throw <see cref="NotSupportedException"/>.
/// </summary>
public sealed class ImageClassifier : LanguageModel
{
    /// <summary>What the decoding members say: an image classifier has no tokens to generate.</summary>
    public const string NotAGenerator = "image_classifier models classify images; they do not generate text";

    private readonly nn.Module<Tensor, Tensor> stem;
    private readonly GroupNorm2d stem_norm;
    private readonly ModuleList<BottleneckBlock> blocks;
    private readonly Linear head;
    private readonly ImageClassifierOptions options;

    /// <summary>Builds the network on <paramref name="device"/> with weights drawn from <paramref name="generator"/>.</summary>
    public ImageClassifier(ImageClassifierOptions options, Device? device = null, Generator? generator = null) : base(nameof(ImageClassifier))
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        var o = this.options;
        stem = o.IsAttention
            ? new LocalSelfAttention2d(o.InputChannels, o.StemWidth, o.StemKernelSize, heads: 1, o.StemValueMixtures, device, generator)
            : new Conv2dLayer(o.InputChannels, o.StemWidth, o.StemKernelSize, device, generator);
        stem_norm = BottleneckBlock.Norm(o.StemWidth, device);
        var list = new List<BottleneckBlock>();
        int channels = o.StemWidth;
        for (int s = 0; s < o.StageWidths.Count; s++)
            for (int i = 0; i < o.StageBlocks[s]; i++)
            {
                int width = o.StageWidths[s], inner = width / o.BottleneckRatio;
                nn.Module<Tensor, Tensor> spatial = o.IsAttention
                    ? new LocalSelfAttention2d(inner, inner, o.KernelSize, o.NumHeads, 1, device, generator)
                    : new Conv2dLayer(inner, inner, o.KernelSize, device, generator);
                list.Add(new BottleneckBlock(channels, width, inner, spatial, downsample: s > 0 && i == 0, device, generator));
                channels = width;
            }
        blocks = new ModuleList<BottleneckBlock>([.. list]);
        head = nn.Linear(channels, o.NumClasses, device: device);
        using (no_grad())
        {
            Initializers.Normal(head.weight!, 1.0 / Math.Sqrt(channels), generator);
            head.bias!.zero_();
        }
        RegisterComponents();
    }

    /// <inheritdoc />
    public override ModelOptions Options => options;

    /// <summary>Class logits for images (B, C, H, W), normalized pixels: (B, classes).</summary>
    public Tensor Classify(Tensor pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        var x = nn.functional.relu(stem_norm.forward(stem.forward(pixels))); // (B, S, H, W)
        x = BottleneckBlock.Pool(x);                                          // (B, S, H/2, W/2)
        foreach (var block in blocks) x = block.forward(x);                   // (B, C, H', W')
        return head.forward(x.mean([2, 3]));                                  // (B, classes)
    }

    /// <summary>Logits (B, 1, classes) for the batch's <see cref="FeatureNames.ImagePixels"/>; its targets are the class ids, (B, 1).</summary>
    public override ModelOutput Forward(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var logits = Classify(features[FeatureNames.ImagePixels]).unsqueeze(1); // (B, 1, classes)
        return new ModelOutput(logits, new Dictionary<string, Tensor>(), new Dictionary<string, Tensor>());
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">Always: an image classifier does not decode tokens.</exception>
    public override Tensor Forward(Tensor tokens, IAttentionContext? context) => throw new NotSupportedException(NotAGenerator);

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">Always: an image classifier caches no keys and values.</exception>
    public override KvCacheShape KvCacheShape => throw new NotSupportedException(NotAGenerator);

    /// <inheritdoc />
    public override long ActiveParameterCount => ParameterCount;

    /// <summary>
    /// Forward FLOPs per image, counted analytically (multiply-adds × 2 of the stem, every block's 1×1 and spatial layers
    /// and the head; norms, activations, softmax and pooling left out).
    /// </summary>
    public long ForwardFlopsPerImage
    {
        get
        {
            var o = options;
            int size = o.ImageSize;
            long flops = SpatialFlops(stem, size);
            size /= 2;
            foreach (var block in blocks)
            {
                flops += block.Flops(size);
                if (block.Downsample) size /= 2;
            }
            return flops + 2L * o.StageWidths[^1] * o.NumClasses;
        }
    }

    /// <summary>Training FLOPs per image (an image is the trainer's token): 3 × <see cref="ForwardFlopsPerImage"/> (forward and backward).</summary>
    public override double FlopsPerToken(int sequenceLength) => 3.0 * ForwardFlopsPerImage;

    internal static long SpatialFlops(nn.Module<Tensor, Tensor> layer, int size) => layer switch
    {
        LocalSelfAttention2d a => a.Flops(size, size),
        Conv2dLayer c => c.Flops(size, size),
        _ => throw new InvalidOperationException($"unknown spatial layer {layer.GetType().Name}"),
    };
}
