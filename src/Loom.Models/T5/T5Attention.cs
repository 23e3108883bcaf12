using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.T5;

/// <summary>
/// T5's multi-head attention: q, k, v and o kernels without biases, and no 1/√Dh scaling of the logits
/// (T5 folds it into the query kernel's initialisation). The position bias and the mask enter as one
/// additive float mask (see <see cref="AdditiveMask"/>), computed once per stack and forward.
/// </summary>
public sealed class T5Attention : nn.Module<Tensor, Tensor>
{
    private readonly Dense q; // (H·Dh, D)
    private readonly Dense k; // (H·Dh, D)
    private readonly Dense v; // (H·Dh, D)
    private readonly Dense o; // (D, H·Dh)
    private readonly int heads, headDim;
    private readonly double dropoutRate;

    /// <summary>
    /// Creates the layer with Mesh TensorFlow's T5 initialisation: q ~ N(0, (D·Dh)^-0.5), k and v ~
    /// N(0, D^-0.5), o ~ N(0, (H·Dh)^-0.5) (the last three are <see cref="Dense"/>'s 1/√fan_in), drawn
    /// from <paramref name="generator"/> (torch's default when null).
    /// </summary>
    public T5Attention(int modelDim, int heads, int headDim, double dropoutRate, Device? device = null, Generator? generator = null)
        : base(nameof(T5Attention))
    {
        this.heads = heads;
        this.headDim = headDim;
        this.dropoutRate = dropoutRate;
        q = new Dense(modelDim, heads * headDim, useBias: false, device, generator);
        Initializers.Normal(q.Weight, 1 / Math.Sqrt((double)modelDim * headDim), generator); // the folded-in 1/√Dh
        k = new Dense(modelDim, heads * headDim, useBias: false, device, generator);
        v = new Dense(modelDim, heads * headDim, useBias: false, device, generator);
        o = new Dense(heads * headDim, modelDim, useBias: false, device, generator);
        RegisterComponents();
    }

    /// <summary>Self-attention of one causal sequence per row from position 0, with no position bias (a shape check; the stacks call <see cref="SelfAttend"/>).</summary>
    public override Tensor forward(Tensor x) =>
        SelfAttend(x, 0, null, inputs => AdditiveMask(inputs, x.shape[1], null, x.dtype));

    /// <summary>
    /// Self-attention of <paramref name="x"/>, (B, T, D): the new keys and values go to
    /// <paramref name="context"/> (a KV cache, packed rows, the encoder's rows; none: one causal sequence
    /// per row), and the queries attend over what it returns with the additive mask
    /// <paramref name="maskOf"/> gives for it (the stack's, shared by all its layers).
    /// </summary>
    public Tensor SelfAttend(Tensor x, int layer, IAttentionContext? context, Func<AttentionInputs, Tensor> maskOf)
    {
        var query = Heads(q.forward(x));                                       // (B, H, T, Dh)
        var key = Heads(k.forward(x));                                         // (B, H, T, Dh)
        var value = Heads(v.forward(x));                                       // (B, H, T, Dh)
        var inputs = context?.Attend(layer, key, value) ?? new AttentionInputs(key, value, null, IsCausal: true); // (B, H, S, Dh)
        return Output(Attend(query, inputs.Keys, inputs.Values, maskOf(inputs), Dropout)); // (B, T, D)
    }

    /// <summary>Cross-attention of <paramref name="x"/>, (B, T, D), to the encoder memory's keys and values, (B, H, S, Dh), with an additive mask (B, 1, 1 or T, S).</summary>
    public Tensor CrossAttend(Tensor x, AttentionInputs memory, Tensor mask)
    {
        var query = Heads(q.forward(x));                                       // (B, H, T, Dh)
        return Output(Attend(query, memory.Keys, memory.Values, mask, Dropout)); // (B, T, D)
    }

    /// <summary>This layer's keys and values of the encoder output, (B, S, D) -> (B, H, S, Dh) each: what <see cref="LanguageModel.Encode"/> caches.</summary>
    public (Tensor Keys, Tensor Values) MemoryKeysValues(Tensor encoded) =>
        (Heads(k.forward(encoded)), Heads(v.forward(encoded)));

    private double Dropout => training ? dropoutRate : 0;

    private Tensor Heads(Tensor x) => x.view(x.shape[0], x.shape[1], heads, headDim).transpose(1, 2); // (B, T, H·Dh) -> (B, H, T, Dh)

    private Tensor Output(Tensor y) => o.forward(y.transpose(1, 2).reshape(y.shape[0], y.shape[2], heads * headDim)); // (B, H, T, Dh) -> (B, T, D)

    /// <summary>
    /// softmax(QKᵀ + mask) V, unscaled as T5 has it, through the fused kernel: the kernel divides the logits
    /// by √Dh, so the queries are multiplied by √Dh first. q (B, H, T, Dh); k, v (B, H, S, Dh); the additive
    /// float mask broadcastable to (B, H, T, S) holds the position bias and a large negative value where
    /// attention is not allowed. <paramref name="dropout"/> drops attention probabilities.
    /// </summary>
    /// <remarks>Keys, values and the mask are cast to the queries' dtype (16-bit under a mixed-precision compute dtype).</remarks>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor mask, double dropout = 0) =>
        nn.functional.scaled_dot_product_attention(q * Math.Sqrt(q.shape[^1]), k.to(q.dtype), v.to(q.dtype), mask.to(q.dtype), dropout); // (B, H, T, Dh)

    /// <summary>
    /// The additive float mask of <paramref name="inputs"/> for <paramref name="t"/> queries: the position
    /// <paramref name="bias"/>, (B or 1, H, T, S) or null, plus <see cref="MaskValue"/> where the boolean mask
    /// forbids (the inputs' mask, or the causal T = S mask of <see cref="AttentionInputs.IsCausal"/>).
    /// Fully forbidden rows (padding) stay finite: they attend uniformly and carry no loss.
    /// </summary>
    /// <returns>The mask, broadcastable to (B, H, T, S), of <paramref name="dtype"/>.</returns>
    public static Tensor AdditiveMask(AttentionInputs inputs, long t, Tensor? bias, ScalarType dtype)
    {
        long s = inputs.Keys.shape[2];
        var device = inputs.Keys.device;
        var allowed = inputs.Mask ?? (inputs.IsCausal ? ones(t, s, dtype: @bool, device: device).tril(s - t) : null); // (B, 1, T, S) or (T, S)
        var penalty = allowed is null
            ? zeros(1, 1, 1, 1, dtype: dtype, device: device)                                                    // (1, 1, 1, 1)
            : zeros(allowed.shape, dtype: dtype, device: device).masked_fill(allowed.logical_not(), MaskValue(dtype)); // (B, 1, T, S)
        if (penalty.dim() == 2) penalty = penalty.unsqueeze(0).unsqueeze(0); // (1, 1, T, S)
        return bias is null ? penalty : bias.to(dtype) + penalty;            // (B, H, T, S)
    }

    /// <summary>The logit added where attention is not allowed: large and negative, yet finite in <paramref name="dtype"/> (so that a fully masked row gives no NaN).</summary>
    public static double MaskValue(ScalarType dtype) => dtype == ScalarType.Float16 ? -3e4 : -1e9;

    /// <summary>
    /// Reference attention written out from the definition softmax(QKᵀ + bias, masked) V, for tests that
    /// check the fused path. q (B, H, T, Dh); k, v (B, H, S, Dh); <paramref name="allowed"/> bool,
    /// broadcastable to (B, H, T, S), or null; <paramref name="bias"/> (B or 1, H, T, S) or null.
    /// </summary>
    public static Tensor Reference(Tensor q, Tensor k, Tensor v, Tensor? allowed, Tensor? bias)
    {
        var scores = q.matmul(k.transpose(-2, -1));                                   // (B, H, T, S), unscaled
        if (bias is not null) scores = scores + bias;
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1).matmul(v);                                          // (B, H, T, Dh)
    }
}
