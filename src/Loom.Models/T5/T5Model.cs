using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// A stack of <see cref="T5Block"/>s with its relative position bias (one table for all its layers)
/// and a final RMSNorm: T5's encoder (bidirectional bias, no cross-attention) or decoder (causal bias,
/// cross-attention in every block).
/// </summary>
public sealed class T5Stack : nn.Module<Tensor, Tensor>
{
    private readonly RelativePositionBias relative_attention_bias;
    private readonly ModuleList<T5Block> blocks;
    private readonly RmsNorm final_norm;
    private readonly double dropoutRate;

    /// <summary>Wraps <paramref name="blocks"/> with the stack's position bias and final norm.</summary>
    public T5Stack(RelativePositionBias bias, IEnumerable<T5Block> blocks, int modelDim, double normEpsilon, double dropoutRate, Device? device = null)
        : base(nameof(T5Stack))
    {
        relative_attention_bias = bias ?? throw new ArgumentNullException(nameof(bias));
        this.blocks = new ModuleList<T5Block>([.. blocks]);
        final_norm = new RmsNorm(modelDim, normEpsilon, device);
        this.dropoutRate = dropoutRate;
        RegisterComponents();
    }

    /// <summary>The blocks, in order.</summary>
    public IEnumerable<T5Block> Blocks => blocks;

    /// <summary>The stack's relative position bias.</summary>
    public RelativePositionBias PositionBias => relative_attention_bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>Embeddings, (B, T, D), through every block within <paramref name="context"/>, then the final norm: (B, T, D); MoE layers report to <paramref name="trace"/>.</summary>
    public Tensor Forward(Tensor x, IAttentionContext? context, MoeTrace? trace = null)
    {
        var masks = new StackMasks(relative_attention_bias, context?.Positions);   // the bias: once per forward
        foreach (var block in blocks) x = block.Forward(x, context, masks, trace); // (B, T, D)
        return nn.functional.dropout(final_norm.forward(x), dropoutRate, training); // (B, T, D)
    }
}

/// <summary>
/// T5 (v1.1) encoder-decoder (Raffel et al. 2020; T5.1.1): one input embedding shared by a bidirectional
/// encoder and a causal decoder that cross-attends to the encoder's output, pre-norm RMSNorm blocks
/// without biases, gated-GELU MLPs, bucketed relative position biases and an untied output layer. The
/// decoder runs the same code in training (<see cref="Forward(FeatureBatch)"/>, packed or not) and in
/// inference (<see cref="Encode"/> once, then <see cref="Forward(Tensor, IAttentionContext?)"/> through a
/// <see cref="KvCache"/> or an engine's cache).
/// </summary>
public sealed class T5Model : LanguageModel
{
    private readonly Parameter shared; // (V, D), the input embedding of both stacks
    private readonly T5Stack encoder;
    private readonly T5Stack decoder;
    private readonly Dense lm_head;    // (V, D), untied
    private readonly T5Options options;

    /// <summary>
    /// Builds the model with Mesh TensorFlow's T5 initialisation on <paramref name="device"/> (meta: shapes
    /// only), drawing from <paramref name="generator"/> (a CPU generator: the weights depend only on its
    /// seed, not on the device); null uses torch's default. Embedding N(0, 1); attention q N(0, (D·Dh)^-0.5),
    /// k and v N(0, D^-0.5), o N(0, (H·Dh)^-0.5); MLP wi N(0, D^-0.5), wo N(0, F^-0.5); lm_head N(0, D^-0.5);
    /// position bias tables N(0, D^-0.5); norms 1.
    /// </summary>
    /// <exception cref="NotSupportedException">The options ask for mixture-of-experts MLPs (not built for T5 yet).</exception>
    public T5Model(T5Options options, Device? device = null, Generator? generator = null) : base(nameof(T5Model))
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        var o = this.options;
        shared = new Parameter(empty(o.VocabSize, o.ModelDim, device: device));
        Initializers.Normal(shared, 1, generator);
        encoder = Stack(o, decoder: false, device, generator);
        decoder = Stack(o, decoder: true, device, generator);
        lm_head = new Dense(o.ModelDim, o.VocabSize, useBias: false, device, generator);
        RegisterComponents();
    }

    private static T5Stack Stack(T5Options o, bool decoder, Device? device, Generator? generator)
    {
        var bias = new RelativePositionBias(o.NumHeads, bidirectional: !decoder, o.RelativeAttentionNumBuckets, o.RelativeAttentionMaxDistance, o.ModelDim, device, generator);
        T5Attention Attention() => new(o.ModelDim, o.NumHeads, o.HeadDim, o.DropoutRate, device, generator);
        var blocks = Enumerable.Range(0, decoder ? o.NumDecoderLayers : o.NumEncoderLayers).Select(l => new T5Block(
            l, Attention(), decoder ? Attention() : null, FeedForward(o, l, decoder, device, generator), o.ModelDim, o.NormEpsilon, o.DropoutRate, device)).ToList();
        return new T5Stack(bias, blocks, o.ModelDim, o.NormEpsilon, o.DropoutRate, device);
    }

    /// <summary>
    /// The feed-forward layer of block <paramref name="layer"/> of a stack: the dense gated-GELU MLP, or
    /// where <see cref="T5Options.Moe"/> says so a mixture of gated-GELU experts (Switch Transformer's T5).
    /// </summary>
    private static nn.Module FeedForward(T5Options o, int layer, bool decoder, Device? device, Generator? generator) =>
        o.Moe is { } moe && moe.IsMoeLayer(layer)
            ? new MoeMlp(o.ModelDim, o.MlpDim, moe.NumExperts, moe.TopK, moe.CapacityFactor, MlpActivation.GeGlu, useBias: false, device, generator)
            : new T5Mlp(o.ModelDim, o.MlpDim, o.DropoutRate, device, generator);

    /// <summary>The validated options the model was built from (a <see cref="T5.T5Options"/>; see <see cref="T5Options"/>).</summary>
    /// <remarks>Typed as the base record: a covariant override shows up twice to TorchSharp's reflection over the module.</remarks>
    public override ModelOptions Options => options;

    /// <summary>The validated T5 options the model was built from.</summary>
    public T5Options T5Options => options;

    /// <inheritdoc />
    public override KvCacheShape KvCacheShape => new(options.NumDecoderLayers, options.NumHeads, options.HeadDim);

    /// <summary>The encoder stack.</summary>
    public T5Stack Encoder => encoder;

    /// <summary>The decoder stack.</summary>
    public T5Stack Decoder => decoder;

    /// <summary>The shared token embedding of <paramref name="tokens"/>, (B, T) -> (B, T, D), dropped out while training.</summary>
    public Tensor Embed(Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        long b = tokens.shape[0], t = tokens.shape[1];
        var x = shared.index_select(0, tokens.reshape(-1)).view(b, t, -1);  // (B, T, D)
        return nn.functional.dropout(x, options.DropoutRate, training);      // (B, T, D)
    }

    /// <summary>
    /// The encoder's output for <paramref name="inputs"/>, (B, S) -> (B, S, D); packed rows with
    /// <paramref name="segmentIds"/> and <paramref name="positions"/>, (B, S) each, attend within their segment.
    /// </summary>
    public Tensor EncoderOutput(Tensor inputs, Tensor? segmentIds = null, Tensor? positions = null) => EncoderOutput(inputs, segmentIds, positions, null);

    private Tensor EncoderOutput(Tensor inputs, Tensor? segmentIds, Tensor? positions, MoeTrace? trace)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        CheckLength(inputs, "encoder inputs");
        return encoder.Forward(Embed(inputs), new EncoderContext(inputs, segmentIds, positions), trace); // (B, S, D)
    }

    /// <inheritdoc />
    /// <remarks>Every input position is valid: callers pass one request's inputs per row, unpadded (or padding they accept attending to).</remarks>
    public override EncoderMemory Encode(Tensor inputs)
    {
        var encoded = EncoderOutput(inputs);                                                          // (B, S, D)
        var valid = ones(inputs.shape[0], inputs.shape[1], dtype: @bool, device: inputs.device);       // (B, S)
        return Memory(encoded, valid);
    }

    /// <summary>Every decoder layer's cross-attention keys and values of <paramref name="encoded"/>, (B, S, D) -> (B, H, S, Dh) each.</summary>
    private EncoderMemory Memory(Tensor encoded, Tensor valid) =>
        new([.. decoder.Blocks.Select(b => b.CrossAttention!.MemoryKeysValues(encoded))], valid);

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">No context, or one without encoder memory: the decoder has nothing to cross-attend to.</exception>
    public override Tensor Forward(Tensor tokens, IAttentionContext? context) => Forward(tokens, context, null);

    private Tensor Forward(Tensor tokens, IAttentionContext? context, MoeTrace? trace)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (context is null) throw T5Block.NoMemory();
        var x = decoder.Forward(Embed(tokens), context, trace); // (B, T, D)
        return lm_head.forward(x);                       // (B, T, V)
    }

    /// <inheritdoc />
    /// <remarks>
    /// Needs <c>encoder_input_tokens</c>. With segment ids (packed rows, or padded ones from
    /// <see cref="EncoderDecoderFeatureConverter"/>) both sides need them and their positions: the encoder
    /// attends within segments, the decoder segment-causally, and decoder segment k cross-attends to
    /// encoder segment k only. Without, every encoder token is real and the decoder is causal from 0.
    /// </remarks>
    /// <exception cref="ArgumentException">Encoder inputs are missing, or only one side is packed.</exception>
    public override ModelOutput Forward(FeatureBatch features)
    {
        ArgumentNullException.ThrowIfNull(features);
        var inputs = features.Find(FeatureNames.EncoderInputTokens)
            ?? throw new ArgumentException($"a T5 batch needs \"{FeatureNames.EncoderInputTokens}\": make it with the EncoderDecoderFeatureConverter");
        var encoderSegments = features.Find(FeatureNames.EncoderSegmentIds);
        var decoderSegments = features.SegmentIds;
        if ((encoderSegments is null) != (decoderSegments is null))
            throw new ArgumentException($"give both \"{FeatureNames.EncoderSegmentIds}\" and \"{FeatureNames.DecoderSegmentIds}\" or neither: segment k of the encoder and of the decoder are the same example");
        var tokens = features.Inputs;                                                                  // (B, T)
        CheckLength(tokens, "decoder inputs");
        // Padding (segment 0) takes no expert slot and counts in no routing loss, on either side.
        var encoderTrace = new MoeTrace(encoderSegments?.ne(0));
        var decoderTrace = new MoeTrace(decoderSegments?.ne(0));
        var encoded = EncoderOutput(inputs, encoderSegments, features.Find(FeatureNames.EncoderPositions), encoderTrace); // (B, S, D)
        var valid = encoderSegments?.ne(0) ?? ones(inputs.shape[0], inputs.shape[1], dtype: @bool, device: inputs.device); // (B, S)
        var memory = Memory(encoded, valid);
        DecoderContext context = decoderSegments is null
            ? new DecoderContext(null, memory, valid.unsqueeze(1).unsqueeze(1), tokens.shape[1])      // cross mask (B, 1, 1, S)
            : new DecoderContext(
                new PackedLayout(decoderSegments, features.Positions ?? throw new ArgumentException($"packed rows need \"{FeatureNames.DecoderPositions}\" beside their segment ids")),
                memory, DecoderContext.SegmentCrossMask(decoderSegments, encoderSegments!), tokens.shape[1]); // cross mask (B, 1, T, S)
        var logits = Forward(tokens, context, decoderTrace);                                      // (B, T, V)
        var (auxiliary, statistics) = MoeTrace.Summarize(options.Moe, encoderTrace, decoderTrace);
        return new ModelOutput(logits, auxiliary, statistics);
    }

    private void CheckLength(Tensor tokens, string what)
    {
        if (tokens.dim() != 2) throw new ArgumentException($"{what} must be (B, T) token ids, not [{string.Join(", ", tokens.shape)}]");
        if (tokens.shape[1] > options.MaxSequenceLength)
            throw new ArgumentException($"{what} of {tokens.shape[1]} tokens exceed model.max_sequence_length = {options.MaxSequenceLength}");
    }

    /// <inheritdoc />
    /// <remarks>Each MoE layer counts its router and the k experts a token visits instead of all E.</remarks>
    public override long ActiveParameterCount => ParameterCount - encoder.Blocks.Concat(decoder.Blocks)
        .Select(b => b.FeedForward).OfType<MoeMlp>().Sum(m => m.InactiveParameterCount);

    /// <inheritdoc />
    /// <remarks>
    /// N excludes lookup-only tables: the input embedding (the output layer is untied) and the two
    /// position bias tables. Attention layers: encoder self-attention plus decoder self- and cross-attention.
    /// </remarks>
    public override double FlopsPerToken(int sequenceLength)
    {
        long lookupOnly = shared.NumberOfElements
            + encoder.PositionBias.parameters().Sum(p => p.NumberOfElements)
            + decoder.PositionBias.parameters().Sum(p => p.NumberOfElements);
        return ModelFlops.PerToken(ActiveParameterCount - lookupOnly, options.NumEncoderLayers + 2 * options.NumDecoderLayers,
            options.NumHeads, options.HeadDim, sequenceLength);
    }
}
