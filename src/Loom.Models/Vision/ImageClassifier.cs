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

    /// <summary>(B, Cin, H, W) → (B, Cout, H, W).</summary>
    public override Tensor forward(Tensor x) =>
        nn.functional.conv2d(x, weight, padding: [KernelSize / 2, KernelSize / 2]); // (B, Cout, H, W)
}

/// <summary>
/// A ResNet bottleneck block whose spatial layer is local self-attention or a convolution (the paper's replacement):
/// 1×1 reduce → spatial k×k → (2×2 average pool when downsampling) → 1×1 expand, each followed by a group norm, ReLU after
/// all but the last, plus a shortcut (pooled and projected by a 1×1 convolution when the shape changes).
/// </summary>
public sealed class BottleneckBlock : nn.Module<Tensor, Tensor>
{
    private readonly Conv2dLayer reduce;
    private readonly GroupNorm reduce_norm;
    private readonly nn.Module<Tensor, Tensor> spatial;
    private readonly GroupNorm spatial_norm;
    private readonly Conv2dLayer expand;
    private readonly GroupNorm expand_norm;
    private readonly Conv2dLayer? shortcut;
    private readonly GroupNorm? shortcut_norm;

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
    internal static GroupNorm Norm(int channels, Device? device) => nn.GroupNorm(channels % 8 == 0 ? 8 : 1, channels, device: device);
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
    private readonly GroupNorm stem_norm;
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
