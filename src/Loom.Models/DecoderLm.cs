using Loom.Models.Layers;
using Loom.Models.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>Cross-entropy, z-loss and their weighted sum, each a scalar tensor (no host sync).</summary>
/// <param name="Total">Cross-entropy + z-loss weight · z-loss: what is differentiated.</param>
/// <param name="CrossEntropy">Mean negative log-likelihood per target token, in nats.</param>
/// <param name="ZLoss">Mean log²Z of the softmax normaliser (PaLM keeps it near 0 for stability).</param>
public sealed record LmLoss(Tensor Total, Tensor CrossEntropy, Tensor ZLoss);

/// <summary>
/// A decoder-only Transformer language model (PaLM family): token embedding, a stack of
/// <see cref="DecoderBlock"/>s, a final norm and an output projection (the transposed embedding
/// when shared). The model holds no generation state: callers pass a <see cref="KvCache"/>.
/// </summary>
public sealed class DecoderLm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter embed;      // (V, D)
    private readonly Parameter? pos_embed; // (maxLen, D), learned positions only
    private readonly Rotary? rotary;
    private readonly ModuleList<DecoderBlock> blocks;
    private readonly nn.Module<Tensor, Tensor> final_norm;
    private readonly Dense? lm_head;       // (V, D), unshared embeddings only

    /// <summary>
    /// Builds the model with PaLM's initialisation on <paramref name="device"/> (meta: shapes only),
    /// drawing from <paramref name="generator"/> (a CPU generator; values are drawn on the CPU and copied
    /// to the device) so that the weights depend only on its seed, not on the device nor on anything
    /// else using torch's default generator; null uses the default.
    /// </summary>
    public DecoderLm(DecoderLmOptions options, Device? device = null, Generator? generator = null) : base(nameof(DecoderLm))
    {
        Options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        var o = Options;
        embed = new Parameter(empty(o.VocabSize, o.ModelDim, device: device));
        Initializers.Normal(embed, 1, generator); // PaLM: N(0, 1), since no norm follows the embedding
        if (o.Positions == PositionEncoding.Learned)
        {
            pos_embed = new Parameter(empty(o.MaxSequenceLength, o.ModelDim, device: device));
            Initializers.Normal(pos_embed, 1, generator);
        }
        else
        {
            rotary = new Rotary(o.HeadDim, o.MaxSequenceLength, o.RopeBase, device);
        }
        blocks = new ModuleList<DecoderBlock>(Enumerable.Range(0, o.NumLayers).Select(l => new DecoderBlock(o, l, rotary, device, generator)).ToArray());
        final_norm = Norms.Create(o, device);
        lm_head = o.SharedEmbeddings ? null : new Dense(o.ModelDim, o.VocabSize, useBias: false, device, generator);
        RegisterComponents();
    }

    /// <summary>The validated options the model was built from.</summary>
    public DecoderLmOptions Options { get; }

    /// <summary>Logits for every position of <paramref name="tokens"/>, (B, T) -> (B, T, V).</summary>
    public override Tensor forward(Tensor tokens) => Forward(tokens, (KvCache?)null);

    /// <summary>
    /// Logits, (B, T, V), for <paramref name="tokens"/>, (B, T), at positions cache.Length.. (0 without a
    /// cache). With a cache the tokens' keys and values are appended to it: a prefill is one call with
    /// the prompt, a decode step one call with the newest token.
    /// </summary>
    public Tensor Forward(Tensor tokens, KvCache? cache) => Forward(tokens, cache, null);

    /// <summary>Logits, (B, T, V), for rows of packed examples (see <see cref="PackedLayout"/>).</summary>
    public Tensor Forward(Tensor tokens, PackedLayout packing) =>
        Forward(tokens, null, packing ?? throw new ArgumentNullException(nameof(packing)));

    /// <summary>
    /// Logits, (B, T, V), for new tokens whose positions, and the keys and values they attend over,
    /// come from <paramref name="context"/> (an inference engine's paged KV cache, for one).
    /// </summary>
    public Tensor Forward(Tensor tokens, IAttentionContext context) =>
        Forward(tokens, null, context ?? throw new ArgumentNullException(nameof(context)));

    private Tensor Forward(Tensor tokens, KvCache? cache, IAttentionContext? packing)
    {
        long t = tokens.shape[1];
        int start = cache?.Length ?? 0;
        if (packing is null && start + t > Options.MaxSequenceLength)
            throw new ArgumentException($"sequence of {start + t} tokens exceeds model.max_sequence_length = {Options.MaxSequenceLength}");
        var x = embed.index_select(0, tokens.reshape(-1)).view(tokens.shape[0], t, -1); // (B, T, D)
        if (pos_embed is not null)
            x = packing is null
                ? x + pos_embed.narrow(0, start, t)                                                        // (B, T, D)
                : x + pos_embed.index_select(0, packing.Positions.reshape(-1)).view(tokens.shape[0], t, -1); // (B, T, D)
        foreach (var block in blocks) x = block.Forward(x, cache, packing); // (B, T, D)
        cache?.Advance((int)t);
        x = final_norm.forward(x);                                       // (B, T, D)
        return lm_head is not null
            ? lm_head.forward(x)                                         // (B, T, V)
            : nn.functional.linear(x, embed) / Math.Sqrt(Options.ModelDim); // (B, T, V), shared: scaled by 1/√D
    }

    /// <summary>
    /// Next-token loss of <paramref name="inputs"/> against <paramref name="targets"/>, both (B, T);
    /// targets equal to <paramref name="ignoreId"/> do not count.
    /// </summary>
    public LmLoss Loss(Tensor inputs, Tensor targets, double zLossWeight, long ignoreId = -1) =>
        Loss(forward(inputs), targets, targets.ne(ignoreId).to(float32), zLossWeight);

    /// <summary>
    /// Next-token loss of packed rows: <paramref name="inputs"/>, <paramref name="targets"/> and
    /// <paramref name="lossWeights"/> (1 for real targets, 0 for padding) are (B, T); each example
    /// is scored as if it were alone (see <see cref="PackedLayout"/>).
    /// </summary>
    public LmLoss Loss(Tensor inputs, Tensor targets, Tensor lossWeights, PackedLayout packing, double zLossWeight) =>
        Loss(Forward(inputs, packing), targets, lossWeights.to(float32), zLossWeight);

    private static LmLoss Loss(Tensor logits, Tensor targets, Tensor weight, double zLossWeight)
    {
        logits = logits.to(float32);                                          // (B, T, V)
        var logZ = logits.logsumexp(-1);                                      // (B, T)
        var targetLogit = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1); // (B, T)
        var count = weight.sum().clamp_min(1);
        var ce = ((logZ - targetLogit) * weight).sum() / count;
        var z = (logZ.pow(2) * weight).sum() / count;
        return new LmLoss(ce + zLossWeight * z, ce, z);
    }

    /// <summary>
    /// Stores every linear kernel (attention q/k/v/o, MLP gate/up/down and an unshared output
    /// projection) as int8 values with per-output-channel scales, freeing the float kernels, and puts
    /// the model in eval mode: a quantized model is for inference only. The token and position
    /// embeddings, norms and biases stay in float, as in the weight-only schemes of LLM.int8 and
    /// Pope et al. 2022, which quantize matmul kernels only: an embedding is a row lookup rather than a
    /// matmul (and, when shared, also the output projection, whose logits are the most sensitive to
    /// rounding), and norm gains and biases are a negligible share of the bytes.
    /// </summary>
    /// <returns>The kernels quantized and the bytes saved; also kept in <see cref="Quantization"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="mode"/> is <see cref="QuantizationMode.None"/>.</exception>
    /// <exception cref="InvalidOperationException">The model is already quantized.</exception>
    public QuantizationReport Quantize(QuantizationMode mode)
    {
        if (mode != QuantizationMode.Int8) throw new ArgumentException($"cannot quantize to {mode}: the supported mode is {QuantizationMode.Int8}", nameof(mode));
        if (Quantization is not null) throw new InvalidOperationException($"the model is already quantized ({Quantization.Mode})");
        var kernels = modules().OfType<Dense>().ToList();
        long linearBefore = kernels.Sum(d => d.KernelBytes);
        long modelBefore = WeightBytes();
        foreach (var kernel in kernels) kernel.QuantizeInt8();
        eval();
        Quantization = new QuantizationReport(mode, kernels.Count, linearBefore, kernels.Sum(d => d.KernelBytes), modelBefore, WeightBytes());
        return Quantization;
    }

    /// <summary>What <see cref="Quantize"/> did; null while the model holds float weights.</summary>
    public QuantizationReport? Quantization { get; private set; }

    /// <summary>Bytes of the weights the model holds: its parameters plus any quantized kernels.</summary>
    private long WeightBytes() =>
        parameters().Sum(p => p.NumberOfElements * p.ElementSize)
        + modules().OfType<Dense>().Where(d => d.IsQuantized).Sum(d => d.KernelBytes);

    /// <summary>Total number of parameters (shared embeddings counted once); the kernels of a quantized model are buffers, not parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.NumberOfElements);

    /// <summary>Parameters outside the token and position embeddings (the N of Kaplan et al.).</summary>
    public long NonEmbeddingParameterCount =>
        ParameterCount - embed.NumberOfElements - (pos_embed?.NumberOfElements ?? 0);
}
