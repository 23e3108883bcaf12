using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Distributed;
using Loom.Models.Parallelism;
using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// A model's loss over a batch, each part a scalar device tensor (no host sync).
/// </summary>
/// <param name="Total">What is differentiated: cross-entropy + z-loss weight · z-loss + every auxiliary loss (already weighted).</param>
/// <param name="CrossEntropy">Mean negative log-likelihood per weighted target token, in nats.</param>
/// <param name="ZLoss">Mean log²Z of the output softmax's normaliser (PaLM keeps it near 0 for stability).</param>
public sealed record ModelLoss(Tensor Total, Tensor CrossEntropy, Tensor ZLoss)
{
    /// <summary>
    /// Named auxiliary losses, weighted as they enter <see cref="Total"/>: for mixture-of-experts models
    /// <c>load_balancing</c> (Switch) and <c>router_z_loss</c> (ST-MoE), averaged over MoE layers.
    /// The trainer logs each in metrics.jsonl.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Auxiliary { get; init; } = new Dictionary<string, Tensor>();

    /// <summary>
    /// Named statistics that are not losses, for logging: for mixture-of-experts models
    /// <c>expert_load</c> (E fractions of routed assignments, averaged over MoE layers) and
    /// <c>dropped_fraction</c> (assignments over capacity).
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Statistics { get; init; } = new Dictionary<string, Tensor>();
}

/// <summary>What a forward pass over a batch of features gives back besides logits.</summary>
/// <param name="Logits">Decoder logits, (B, T, V).</param>
/// <param name="Auxiliary">Named auxiliary losses, weighted (see <see cref="ModelLoss.Auxiliary"/>).</param>
/// <param name="Statistics">Named statistics (see <see cref="ModelLoss.Statistics"/>).</param>
public sealed record ModelOutput(Tensor Logits, IReadOnlyDictionary<string, Tensor> Auxiliary, IReadOnlyDictionary<string, Tensor> Statistics);

/// <summary>
/// The shape of the keys and values a model caches per token for self-attention: what sizes an
/// inference engine's KV blocks. The engine's cache manager owns the memory; the model only reads and
/// writes what an <see cref="IAttentionContext"/> hands it.
/// </summary>
/// <param name="NumLayers">Layers that cache keys and values (a decoder's layers).</param>
/// <param name="NumKvHeads">Key/value heads per layer (1 = multi-query).</param>
/// <param name="HeadDim">Width of each head.</param>
public sealed record KvCacheShape(int NumLayers, int NumKvHeads, int HeadDim);

/// <summary>
/// The contract every model family implements (in the spirit of t5x's <c>BaseModel</c>): the trainer,
/// the evaluators, the inference engines, the server and the checkpoints depend on it alone, never on a
/// concrete model class.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Training calls <see cref="Loss"/> once per micro-batch with the batch its
/// <see cref="FeatureLayout"/>'s converter produced.</item>
/// <item>Evaluation calls <see cref="Score"/> (per-example log-likelihoods) and, through an injected
/// decoder, generates from <see cref="Forward(Tensor, IAttentionContext?)"/>.</item>
/// <item>Inference engines call <see cref="Encode"/> once per request of an encoder-decoder model, then
/// <see cref="Forward(Tensor, IAttentionContext?)"/> for prefill and decode steps against an attention
/// context whose cache they own, sized by <see cref="KvCacheShape"/>.</item>
/// </list>
/// </remarks>
public abstract class LanguageModel : nn.Module
{
    /// <summary>Registers the module under <paramref name="name"/>.</summary>
    protected LanguageModel(string name) : base(name)
    {
    }

    /// <summary>The validated options the model was built from; their <see cref="ModelOptions.Architecture"/> names the family.</summary>
    public abstract ModelOptions Options { get; }

    /// <summary>Which feature converter makes this model's batches.</summary>
    public FeatureLayout FeatureLayout => Options.FeatureLayout;

    /// <summary>Whether the model has an encoder (<see cref="Encode"/>), whose memory decoding cross-attends to.</summary>
    public bool IsEncoderDecoder => FeatureLayout == FeatureLayout.EncoderDecoder;

    /// <summary>The self-attention keys and values the decoder caches per token.</summary>
    public abstract KvCacheShape KvCacheShape { get; }

    /// <summary>Longest decoder sequence (and, for an encoder-decoder, longest input) the model accepts.</summary>
    public int ContextLength => Options.MaxSequenceLength;

    /// <summary>
    /// Logits and auxiliary outputs for a batch of named features (<see cref="FeatureNames"/>): decoder
    /// inputs, and where present segment ids and positions (packed rows: each example is scored as if
    /// alone) and encoder inputs.
    /// </summary>
    public abstract ModelOutput Forward(FeatureBatch features);

    /// <summary>
    /// Decoder logits, (B, T, V), for new tokens, (B, T). Without a context the tokens are one causal
    /// sequence per row from position 0 (the no-cache reference path). With one, each token's position, the
    /// keys and values it attends over (and, for an encoder-decoder, the encoder memory it cross-attends
    /// to) come from the context: a <see cref="KvCache"/> step, packed rows, or an engine's paged cache.
    /// </summary>
    public abstract Tensor Forward(Tensor tokens, IAttentionContext? context);

    /// <summary>
    /// Runs the encoder over <paramref name="inputs"/>, (B, S), and projects its output into every decoder
    /// layer's cross-attention keys and values: computed once per request, then cached by the caller.
    /// </summary>
    /// <exception cref="NotSupportedException">The model has no encoder.</exception>
    public virtual EncoderMemory Encode(Tensor inputs) =>
        throw new NotSupportedException($"a {Options.Architecture} model has no encoder: prompts go to the decoder");

    /// <summary>The images the model reads in its token sequence, or null for a text-only model.</summary>
    public virtual ImageInputSpec? ImageInput => null;

    /// <summary>
    /// The soft tokens of images, (M, H, W) greyscale in [0, 1] -> (M, K, D): what replaces each image's K placeholder
    /// ids in the decoder's input. Inference engines call it once per request with images, then pass its rows to
    /// <see cref="Forward(Tensor, Tensor, Tensor, IAttentionContext?)"/> as prefill chunks reach the placeholders.
    /// </summary>
    /// <exception cref="NotSupportedException">The model reads text only (<see cref="ImageInput"/> is null).</exception>
    public virtual Tensor EncodeImages(Tensor pixels) =>
        throw new NotSupportedException($"a {Options.Architecture} model reads text only: it has no image encoder");

    /// <summary>
    /// As <see cref="Forward(Tensor, IAttentionContext?)"/>, with the positions where <paramref name="imageMask"/>,
    /// (B, T) bool, is true taking the rows of <paramref name="softTokens"/>, (N, D), in row-major order, instead of
    /// their token embeddings (N = the mask's true count).
    /// </summary>
    /// <exception cref="NotSupportedException">The model reads text only.</exception>
    public virtual Tensor Forward(Tensor tokens, Tensor softTokens, Tensor imageMask, IAttentionContext? context) =>
        throw new NotSupportedException($"a {Options.Architecture} model reads text only: it has no image encoder");

    /// <summary>
    /// The decoder's first tokens for a prompt: the prompt itself for a decoder-only model; the start token
    /// (seqio: the pad id) for an encoder-decoder, whose prompt goes to the encoder.
    /// </summary>
    public int[] DecoderPrefix(IReadOnlyList<int> prompt, int startId)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return IsEncoderDecoder ? [startId] : [.. prompt];
    }

    /// <summary>
    /// The loss of a batch: mean cross-entropy over the weighted targets (every target when the batch has
    /// no loss weights), plus <paramref name="zLossWeight"/> · z-loss and the model's auxiliary losses.
    /// A family may compute it without the whole logits (the Reformer's chunked output layer).
    /// </summary>
    public virtual ModelLoss Loss(FeatureBatch features, double zLossWeight)
    {
        ArgumentNullException.ThrowIfNull(features);
        var output = Forward(features);
        var loss = LossOfLogits(output.Logits, features.Targets, features.LossWeights, zLossWeight);
        var total = loss.Total;
        foreach (var aux in output.Auxiliary.Values) total = total + aux;
        return loss with { Total = total, Auxiliary = output.Auxiliary, Statistics = output.Statistics };
    }

    /// <summary>
    /// Cross-entropy and z-loss of <paramref name="logits"/>, (B, T, V), against <paramref name="targets"/>,
    /// (B, T), weighted by <paramref name="lossWeights"/> (null: every target counts).
    /// </summary>
    public static ModelLoss LossOfLogits(Tensor logits, Tensor targets, Tensor? lossWeights, double zLossWeight)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        var (nll, logZ, weight) = TokenLogLikelihoods(logits, targets, lossWeights);
        var count = weight.sum().clamp_min(1);
        var ce = (nll * weight).sum() / count;
        var z = (logZ.pow(2) * weight).sum() / count;
        return new ModelLoss(ce + zLossWeight * z, ce, z);
    }

    /// <summary>
    /// Per-row scores: the summed log-likelihood of each row's weighted targets, (B) float32 (t5x's
    /// <c>score_batch</c>). With one example per row this is each example's log P(targets | inputs).
    /// </summary>
    public Tensor Score(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var (nll, _, weight) = TokenLogLikelihoods(Forward(features).Logits, features.Targets, features.LossWeights);
        return -(nll * weight).sum(1); // (B)
    }

    /// <summary>Negative log-likelihood and log Z of every target, (B, T), and its loss weight.</summary>
    private static (Tensor Nll, Tensor LogZ, Tensor Weight) TokenLogLikelihoods(Tensor logits, Tensor targets, Tensor? lossWeights)
    {
        var weight = lossWeights?.to(float32) ?? ones_like(targets, float32);               // (B, T)
        logits = logits.to(float32);                                                        // (B, T, V)
        var logZ = logits.logsumexp(-1);                                                    // (B, T)
        var targetLogit = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1); // (B, T)
        return (logZ - targetLogit, logZ, weight);
    }

    /// <summary>
    /// The dtype matmuls and attention run in (see <see cref="ComputePrecision"/>): float32 unless the trainer
    /// chose otherwise (training.precision). A model built or loaded from a checkpoint computes in float32.
    /// </summary>
    public ComputePrecision Precision { get; private set; }

    /// <summary>
    /// Makes every dense and expert kernel (and a shared output projection) compute in <paramref name="precision"/>;
    /// the parameters stay float32. Norms, the router, the residual stream and the loss stay float32.
    /// </summary>
    public void UsePrecision(ComputePrecision precision)
    {
        foreach (var layer in modules().OfType<IMixedPrecisionLayer>()) layer.ComputeDtype = precision.Dtype();
        Precision = precision;
    }

    /// <summary>How this rank holds the model: <see cref="TensorParallelLayout.Whole"/> until <see cref="ShardForTensorParallel"/>.</summary>
    public TensorParallelLayout TensorParallel { get; private set; } = TensorParallelLayout.Whole;

    /// <summary>
    /// Splits the model over <paramref name="group"/> (tensor parallelism, Megatron-style) as <paramref name="rules"/>
    /// map its parameters' logical axes: each rank keeps its part of every split kernel, built from the whole model's
    /// weights (so a seed gives the same model however it is split). With one rank nothing changes.
    /// </summary>
    /// <returns>Which parameters were cut along which dimension, and which replicated ones get partial gradients.</returns>
    /// <exception cref="ArgumentException">The family or a layer cannot be split so, or a split is uneven; the message says which setting to change.</exception>
    /// <exception cref="InvalidOperationException">The model is already split.</exception>
    public TensorParallelLayout ShardForTensorParallel(ICommunicator group, PartitionRules rules)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(rules);
        if (TensorParallel.Parts > 1) throw new InvalidOperationException("the model is already split over a model group");
        if (group.WorldSize == 1) return TensorParallel;
        var whole = named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var partial = ShardLayers(group, rules);
        var sharded = new Dictionary<string, int>(StringComparer.Ordinal);
        var partialNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, parameter) in named_parameters())
        {
            var shape = parameter.shape;
            for (int dim = 0; dim < shape.Length; dim++)
                if (shape[dim] != whole[name][dim]) sharded[name] = dim;
            if (partial.Any(p => ReferenceEquals(p, parameter))) partialNames.Add(name);
        }
        return TensorParallel = new TensorParallelLayout(group, sharded, partialNames);
    }

    /// <summary>
    /// The family's part of <see cref="ShardForTensorParallel"/>: splits its layers and returns the replicated
    /// parameters whose gradients each rank holds only part of. Families that cannot be split throw.
    /// </summary>
    protected virtual IReadOnlyList<TorchSharp.Modules.Parameter> ShardLayers(ICommunicator group, PartitionRules rules) =>
        throw new ArgumentException($"tensor parallelism is not implemented for {Options.Architecture} models yet: set parallelism.model = 1 (train them data parallel)");

    /// <summary>Total parameters (shared tables counted once); a quantized model's int8 kernels are buffers, not parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.NumberOfElements);

    /// <summary>
    /// Parameters that take part in computing one token: all of them for a dense model; for a
    /// mixture-of-experts model, the experts a token is routed to (top-k of E) instead of all E.
    /// </summary>
    public abstract long ActiveParameterCount { get; }

    /// <summary>
    /// Training FLOPs per token at <paramref name="sequenceLength"/> (PaLM, Appendix B): 6 · N_active
    /// (matmul parameters, lookup-only tables excluded) plus 12 · L · H · Q · T for attention.
    /// </summary>
    public abstract double FlopsPerToken(int sequenceLength);

    /// <summary>
    /// Stores the model's linear kernels (attention, MLP and expert kernels, an unshared output projection)
    /// as int8 with per-output-channel scales and puts it in eval mode: a quantized model is for inference only.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="mode"/> is <see cref="QuantizationMode.None"/>.</exception>
    /// <exception cref="InvalidOperationException">The model is already quantized.</exception>
    public QuantizationReport Quantize(QuantizationMode mode)
    {
        if (mode != QuantizationMode.Int8) throw new ArgumentException($"cannot quantize to {mode}: the supported mode is {QuantizationMode.Int8}", nameof(mode));
        if (Quantization is not null) throw new InvalidOperationException($"the model is already quantized ({Quantization.Mode})");
        var kernels = modules().OfType<IQuantizableKernel>().ToList();
        long linearBefore = kernels.Sum(d => d.KernelBytes);
        long modelBefore = WeightBytes();
        foreach (var kernel in kernels) kernel.QuantizeInt8();
        eval();
        Quantization = new QuantizationReport(mode, kernels.Count, linearBefore, kernels.Sum(d => d.KernelBytes), modelBefore, WeightBytes());
        return Quantization;
    }

    /// <summary>The LoRA adapters applied over the frozen kernels (see <see cref="Adapters.LoraAdapters"/>); null when none.</summary>
    public Adapters.LoraAdapters? Lora { get; internal set; }

    /// <summary>What <see cref="Quantize"/> did; null while the model holds float weights.</summary>
    public QuantizationReport? Quantization { get; private set; }

    /// <summary>Bytes of the weights the model holds: its parameters plus any quantized kernels.</summary>
    private long WeightBytes() =>
        parameters().Sum(p => p.NumberOfElements * p.ElementSize)
        + modules().OfType<IQuantizableKernel>().Where(d => d.IsQuantized).Sum(d => d.KernelBytes);
}

/// <summary>What images a model reads: their size, and the placeholder ids each becomes in the token sequence.</summary>
/// <param name="ImageSize">Height and width in pixels (greyscale, square).</param>
/// <param name="TokensPerImage">K: soft tokens (and placeholder ids) per image.</param>
/// <param name="PlaceholderId">The token id whose positions take an image's soft tokens.</param>
public sealed record ImageInputSpec(int ImageSize, int TokensPerImage, int PlaceholderId);

/// <summary>
/// An encoder's output as the decoder cross-attends to it: every decoder layer's keys and values,
/// (B, Hkv, S, Dh), and which of the S positions are real tokens, (B, S) bool. Computed once per request
/// by <see cref="LanguageModel.Encode"/>; its owner disposes it.
/// </summary>
public sealed class EncoderMemory : IDisposable
{
    /// <summary>Wraps per-layer keys and values and the valid-position mask (the memory takes ownership).</summary>
    public EncoderMemory(IReadOnlyList<(Tensor Keys, Tensor Values)> layers, Tensor valid)
    {
        Layers = layers ?? throw new ArgumentNullException(nameof(layers));
        Valid = valid ?? throw new ArgumentNullException(nameof(valid));
    }

    /// <summary>Keys and values of each decoder layer, (B, Hkv, S, Dh) each.</summary>
    public IReadOnlyList<(Tensor Keys, Tensor Values)> Layers { get; }

    /// <summary>True at real encoder positions, (B, S).</summary>
    public Tensor Valid { get; }

    /// <summary>S: encoder positions.</summary>
    public long Length => Valid.shape[1];

    /// <summary>Detaches every tensor from the current dispose scope (a cache that outlives the step keeps it).</summary>
    public EncoderMemory DetachFromDisposeScope()
    {
        foreach (var (k, v) in Layers)
        {
            k.DetachFromDisposeScope();
            v.DetachFromDisposeScope();
        }
        Valid.DetachFromDisposeScope();
        return this;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (k, v) in Layers)
        {
            k.Dispose();
            v.Dispose();
        }
        Valid.Dispose();
    }
}
