using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// What <see cref="MoeMlp"/> returns: the layer output and the router's auxiliary losses and
/// statistics. Every tensor stays on the layer's device (reading them is the caller's host sync);
/// the losses and statistics are float32 and count real tokens only (mask 1).
/// </summary>
/// <param name="Output">The layer output, (B, T, D), in the input's dtype; 0 for a padding token and for a token whose every assignment was dropped.</param>
/// <param name="LoadBalancingLoss">Switch's E · Σᵢ fᵢ · Pᵢ, a scalar, without its coefficient α: 1 when the routing is uniform, E when every token goes to one expert.</param>
/// <param name="RouterZLoss">ST-MoE's mean over tokens of logsumexp(router logits)², a scalar, without its coefficient.</param>
/// <param name="ExpertLoad">fᵢ, (E): the fraction of the k · N token assignments the router sent to each expert, before capacity drops; sums to 1.</param>
/// <param name="DroppedFraction">The fraction of the k · N assignments dropped for want of capacity, a scalar; 0 when dropless.</param>
/// <param name="Capacity">Slots per expert C this call used (a host value: it sizes the dispatch buffer).</param>
public sealed record MoeOutput(Tensor Output, Tensor LoadBalancingLoss, Tensor RouterZLoss, Tensor ExpertLoad, Tensor DroppedFraction, long Capacity);

/// <summary>
/// Mixture-of-experts feed-forward layer (Shazeer et al. 2017; GShard, Lepikhin et al. 2020;
/// Switch, Fedus et al. 2021): E feed-forward experts of <see cref="Mlp"/>'s form and a linear
/// router that sends each token to its top-k experts, k = 1 (Switch) or 2 (GShard, Mixtral):
/// <code>
///   p = softmax(x W_r)                       router probabilities, float32
///   (g, e) = top_k(p)                        k = 2: g ← g / Σ g (GShard, Mixtral); k = 1: g = p_e (Switch)
///   y = Σⱼ g_j · Expert_{e_j}(x)             zero for an assignment over its expert's capacity
/// </code>
/// The experts run as batched matmuls over an (E, C, D) dispatch buffer of C slots per expert, so
/// the forward has no per-expert loop and no host sync (except the one read that sizes a dropless
/// buffer, see the constructor's capacityFactor).
/// Slots go to the top-1 choices of all tokens first, then to the second choices (GShard's
/// priority), each in token order; an assignment past slot C is dropped, and a token whose every
/// assignment was dropped comes out as 0, so the residual stream carries it unchanged.
/// </summary>
public sealed class MoeMlp : nn.Module<Tensor, Tensor?, MoeOutput>
{
    // Field names are the state-dict keys. The router is a bare parameter rather than a Dense so that
    // quantizing every Dense of a model leaves it in float: routing decisions are discrete, and the
    // router is E · D weights, a negligible share of the bytes.
    private readonly Parameter router_weight; // (E, D)
    private readonly ExpertDense? gate;       // (E, F, D), SwiGLU only
    private readonly ExpertDense up;          // (E, F, D)
    private readonly ExpertDense down;        // (E, D, F)

    private readonly int numExperts;
    private readonly int topK;
    private readonly double? capacityFactor;
    private readonly int modelDim, mlpDim;

    /// <summary>
    /// Creates the layer on <paramref name="device"/>; initial values come from
    /// <paramref name="generator"/> (torch's default when null), in the order router, gate, up, down,
    /// each N(0, 1/sqrt(fan_in)) like <see cref="Dense"/>.
    /// </summary>
    /// <param name="modelDim">D, the width of the residual stream.</param>
    /// <param name="mlpDim">F, the hidden width of each expert.</param>
    /// <param name="numExperts">E, the number of experts.</param>
    /// <param name="topK">k, the experts each token is sent to: 1 or 2.</param>
    /// <param name="capacityFactor">
    /// Slots per expert C = ceil(capacityFactor · N · k / E) (at most N) for the N = B · T positions
    /// of a batch; padding is counted in N so that C depends on the batch's shape only, not on its
    /// mask (which would need a host read). Null = dropless: C is the largest expert load of the
    /// batch, read from the device once per call. The alternative without the read, C = N, would
    /// make the expert matmuls E / k times larger than the work routed to them. The limit applies in
    /// training mode only; in evaluation mode routing is always dropless.
    /// </param>
    /// <param name="activation">Each expert's nonlinearity, as in <see cref="Mlp"/>.</param>
    /// <param name="useBias">Biases in the expert kernels (the router has none).</param>
    /// <param name="device">Device of the weights.</param>
    /// <param name="generator">Source of the initial values.</param>
    /// <exception cref="ArgumentException">A dimension is not positive, or the routing is invalid; the message names the
    /// config field (<c>model.moe.num_experts</c>, <c>top_k</c>, <c>capacity_factor</c>).</exception>
    public MoeMlp(int modelDim, int mlpDim, int numExperts, int topK, double? capacityFactor, MlpActivation activation,
        bool useBias = false, Device? device = null, Generator? generator = null) : base(nameof(MoeMlp))
    {
        if (modelDim <= 0) throw new ArgumentException($"modelDim = {modelDim} must be a positive integer", nameof(modelDim));
        if (mlpDim <= 0) throw new ArgumentException($"mlpDim = {mlpDim} must be a positive integer", nameof(mlpDim));
        ValidateRouting(numExperts, topK, capacityFactor);
        this.numExperts = numExperts;
        this.topK = topK;
        this.capacityFactor = capacityFactor;
        this.modelDim = modelDim;
        this.mlpDim = mlpDim;
        Activation = activation;

        router_weight = new Parameter(empty(numExperts, modelDim, device: device));
        Initializers.Normal(router_weight, 1.0 / Math.Sqrt(modelDim), generator);
        gate = activation.IsGated() ? new ExpertDense(numExperts, modelDim, mlpDim, useBias, device, generator) : null;
        up = new ExpertDense(numExperts, modelDim, mlpDim, useBias, device, generator);
        down = new ExpertDense(numExperts, mlpDim, modelDim, useBias, device, generator);
        RegisterComponents();
    }

    // The constructor takes plain values, so it names the config fields they come from itself.
    private static void ValidateRouting(int numExperts, int topK, double? capacityFactor)
    {
        if (numExperts <= 0) throw new ArgumentException($"model.moe.num_experts = {numExperts} must be a positive integer");
        if (topK > numExperts) throw new ArgumentException($"model.moe.top_k = {topK} must be at most model.moe.num_experts = {numExperts}");
        if (topK is not (1 or 2)) throw new ArgumentException($"model.moe.top_k = {topK} must be 1 (Switch) or 2 (GShard)");
        if (capacityFactor is { } c && !(c > 0 && double.IsFinite(c)))
            throw new ArgumentException($"model.moe.capacity_factor = {c} must be positive (or null for dropless routing)");
    }

    /// <summary>E, the number of experts.</summary>
    public int NumExperts => numExperts;

    /// <summary>k, the experts each token is sent to.</summary>
    public int TopK => topK;

    /// <summary>The capacity factor; null = dropless.</summary>
    public double? CapacityFactor => capacityFactor;

    /// <summary>Each expert's nonlinearity.</summary>
    public MlpActivation Activation { get; }

    /// <summary>The router kernel, (E, D); logits are x W_rᵀ.</summary>
    public Parameter RouterWeight => router_weight;

    /// <summary>The experts' gate kernels, (E, F, D); null for GELU.</summary>
    public ExpertDense? Gate => gate;

    /// <summary>The experts' up kernels, (E, F, D).</summary>
    public ExpertDense Up => up;

    /// <summary>The experts' down kernels, (E, D, F).</summary>
    public ExpertDense Down => down;

    /// <summary>Whether the expert kernels are held as int8 (the router always stays float).</summary>
    public bool IsQuantized => up.IsQuantized;

    /// <summary>Bytes the kernels occupy: the float router plus the experts' float or int8 kernels (biases not included).</summary>
    public long KernelBytes => router_weight.NumberOfElements * router_weight.ElementSize
        + (gate?.KernelBytes ?? 0) + up.KernelBytes + down.KernelBytes;

    /// <summary>
    /// Stores every expert kernel as int8 with per-(expert, output-channel) scales (see
    /// <see cref="ExpertDense.QuantizeInt8"/>) and frees the float kernels; the layer is then for
    /// inference only. The router stays in float: an error in its logits changes which expert a
    /// token visits, not just the value it gets.
    /// </summary>
    /// <exception cref="InvalidOperationException">The layer is already quantized.</exception>
    public void QuantizeInt8()
    {
        if (IsQuantized) throw new InvalidOperationException("this MoeMlp layer is already quantized to int8");
        gate?.QuantizeInt8();
        up.QuantizeInt8();
        down.QuantizeInt8();
    }

    /// <summary>Parameters of one expert: its kernels and, with <paramref name="useBias"/>, their biases.</summary>
    private static long ExpertParameterCount(int modelDim, int mlpDim, MlpActivation activation, bool useBias)
    {
        long kernelsIn = activation.IsGated() ? 2 : 1; // gate and up, or up: D -> F each
        long weights = kernelsIn * modelDim * mlpDim + (long)mlpDim * modelDim;
        long biases = useBias ? kernelsIn * mlpDim + modelDim : 0;
        return weights + biases;
    }

    /// <summary>Parameters the layer holds: the router, E · D, and E experts.</summary>
    public static long ParameterCount(int modelDim, int mlpDim, int numExperts, MlpActivation activation, bool useBias = false) =>
        (long)numExperts * modelDim + numExperts * ExpertParameterCount(modelDim, mlpDim, activation, useBias);

    /// <summary>Parameters of the E − k experts a token does not visit: what separates a model's total and active counts.</summary>
    public long InactiveParameterCount
    {
        get
        {
            return (long)(numExperts - topK) * ExpertParameterCount(modelDim, mlpDim, Activation, up.Bias is not null);
        }
    }

    /// <summary>Parameters a token is computed with: the whole router, E · D, and the k experts it visits.</summary>
    public static long ActiveParameterCount(int modelDim, int mlpDim, int numExperts, int topK, MlpActivation activation, bool useBias = false) =>
        (long)numExperts * modelDim + topK * ExpertParameterCount(modelDim, mlpDim, activation, useBias);

    /// <summary>
    /// Routes <paramref name="x"/>, (B, T, D), through the experts. <paramref name="mask"/>, (B, T),
    /// marks real tokens with 1 and padding with 0 (all real when null): padding takes no expert
    /// slot, comes out as 0 and counts in neither the statistics nor the losses.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> is not (B, T, D) or <paramref name="mask"/> is not (B, T).</exception>
    /// <exception cref="InvalidOperationException">The layer is quantized and in training mode.</exception>
    public override MoeOutput forward(Tensor x, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 3) throw new ArgumentException($"expected x of shape (B, T, D), got [{string.Join(", ", x.shape)}]", nameof(x));
        if (mask is not null && !mask.shape.SequenceEqual(x.shape[..2]))
            throw new ArgumentException($"expected a mask of shape (B, T) = [{x.shape[0]}, {x.shape[1]}], got [{string.Join(", ", mask.shape)}]", nameof(mask));
        using var scope = NewDisposeScope();
        long batch = x.shape[0], time = x.shape[1], d = x.shape[2];
        long n = batch * time, e = numExperts, k = topK;
        var tokens = x.reshape(n, d);                                                         // (N, D)
        var real = mask is null ? ones(n, dtype: float32, device: x.device) : mask.reshape(n).to(float32); // (N), 1 = real
        var realCount = real.sum().clamp_min(1);                                              // ()

        // Router in float32 whatever the activations' dtype: the softmax and its z-loss are sensitive to rounding.
        var logits = nn.functional.linear(tokens.to(float32), router_weight.to(float32));    // (N, E)
        var probs = nn.functional.softmax(logits, -1);                                       // (N, E)
        var (topProbs, topExperts) = probs.topk((int)k, dim: -1);                            // (N, k), (N, k)
        var gates = k == 1 ? topProbs : topProbs / topProbs.sum(-1, keepdim: true);          // (N, k)

        // Assignments in GShard's priority: all first choices, then all second choices, each in token order.
        var experts = topExperts.t().reshape(k * n);                                         // (k·N)
        var assignmentGates = gates.t().reshape(k * n);                                      // (k·N)
        var assignmentReal = real.repeat(k);                                                 // (k·N)
        var routed = nn.functional.one_hot(experts, e) * assignmentReal.to(int64).unsqueeze(1); // (k·N, E), padding rows 0
        var load = routed.sum(dim: 0);                                                       // (E), assignments per expert
        // Slot of an assignment within its expert = how many earlier assignments chose that expert; -1 for padding.
        var position = (routed.cumsum(0) * routed).sum(-1) - 1;                              // (k·N)

        // The capacity limit is a training device (fixed shapes, bounded work). In evaluation routing is
        // dropless, so a token's output never depends on what else shares its batch: an inference engine's
        // batched output equals decoding each request alone.
        long capacity = capacityFactor is { } factor && training
            ? Math.Min(n, (long)Math.Ceiling(factor * n * k / e))
            : load.max().item<long>();                                                       // dropless: the one host read
        capacity = Math.Max(capacity, 1);
        var kept = position.ge(0).logical_and(position.lt(capacity));                       // (k·N)
        // Slot in the flattened (E·C) buffer. Dropped and padding assignments share one spare row E·C: cut off
        // before the experts run, and a row of zeros when the outputs are gathered back.
        var slot = where(kept, experts * capacity + position, full_like(position, e * capacity)); // (k·N)

        // Dispatch: each kept slot receives exactly one token, so the index_add is a copy (and differentiable).
        var dispatched = zeros(e * capacity + 1, d, dtype: x.dtype, device: x.device)
            .index_add(0, slot, tokens.repeat(k, 1), 1);                                     // (E·C + 1, D)
        var expertInput = dispatched.narrow(0, 0, e * capacity).view(e, capacity, d);        // (E, C, D)

        // The experts, batched: Mlp's forward with an expert axis in front.
        var hidden = MlpActivations.Hidden(Activation, gate?.forward(expertInput), up.forward(expertInput)); // (E, C, F)
        var expertOutput = down.forward(hidden).view(e * capacity, d);                       // (E·C, D)

        // Combine: the spare row reads as 0, so a dropped assignment contributes nothing. The gate-weighted
        // sum is taken in float32 so that the gates are not rounded to a 16-bit activation dtype first.
        var withSpare = cat(new[] { expertOutput, zeros(1, d, dtype: expertOutput.dtype, device: x.device) }, 0); // (E·C + 1, D)
        var perAssignment = withSpare.index_select(0, slot).to(float32) * assignmentGates.unsqueeze(1); // (k·N, D)
        var output = perAssignment.view(k, n, d).sum(dim: 0).to(x.dtype).view(batch, time, d);   // (B, T, D)

        // Statistics and losses over real tokens. fᵢ counts all k choices over k·N assignments (for k = 1
        // Switch's top-1 fraction), so the loss is 1 under uniform routing whatever k; HF's Mixtral loss
        // counts them over N, which is k times this. f is piecewise constant: the gradient flows through P.
        var expertLoad = load.to(float32) / (realCount * k);                                 // (E)
        var meanProbs = (probs * real.unsqueeze(1)).sum(dim: 0) / realCount;                 // (E)
        var loadBalancing = (expertLoad * meanProbs).sum() * e;                              // ()
        var zLoss = (logits.logsumexp(-1).pow(2) * real).sum() / realCount;                 // ()
        var dropped = (position.ge(0).logical_and(kept.logical_not())).to(float32).sum() / (realCount * k); // ()

        return new MoeOutput(output.MoveToOuterDisposeScope(), loadBalancing.MoveToOuterDisposeScope(), zLoss.MoveToOuterDisposeScope(),
            expertLoad.MoveToOuterDisposeScope(), dropped.MoveToOuterDisposeScope(), capacity);
    }

    /// <summary>
    /// Reference for <see cref="forward"/> with unlimited capacity: a host loop over the tokens, each
    /// routed on its own and run through its k experts one matrix-vector product at a time
    /// (dequantizing int8 kernels). Slow; for tests.
    /// </summary>
    /// <returns>The layer output, (B, T, D), in <paramref name="x"/>'s dtype; 0 for padding.</returns>
    public Tensor Reference(Tensor x, Tensor? mask = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var dtype = x.dtype;
        var router = router_weight.to(float32);                                              // (E, D)
        var gateKernels = gate?.KernelAs(dtype);                                             // (E, F, D)
        var upKernels = up.KernelAs(dtype);                                                  // (E, F, D)
        var downKernels = down.KernelAs(dtype);                                              // (E, D, F)
        var output = zeros_like(x);                                                          // (B, T, D)
        for (long b = 0; b < x.shape[0]; b++)
        {
            for (long t = 0; t < x.shape[1]; t++)
            {
                if (mask is not null && mask[b, t].to(float32).item<float>() == 0) continue;
                var token = x[b, t];                                                         // (D)
                var probs = nn.functional.softmax(router.mv(token.to(float32)), 0);         // (E)
                var (topProbs, topExperts) = probs.topk(topK);                               // (k), (k)
                var gates = topK == 1 ? topProbs : topProbs / topProbs.sum();               // (k)
                var y = zeros(x.shape[2], dtype: float32, device: x.device);                 // (D)
                for (int j = 0; j < topK; j++)
                {
                    long expert = topExperts[j].item<long>();
                    var upValue = upKernels[expert].mv(token) + (up.Bias?[expert].to(dtype) ?? zeros(1, dtype: dtype)); // (F)
                    var gateValue = gateKernels is null ? null : gateKernels[expert].mv(token) + (gate!.Bias?[expert].to(dtype) ?? zeros(1, dtype: dtype)); // (F)
                    var h = MlpActivations.Hidden(Activation, gateValue, upValue);           // (F)
                    var value = downKernels[expert].mv(h) + (down.Bias?[expert].to(dtype) ?? zeros(1, dtype: dtype)); // (D)
                    y += gates[j] * value.to(float32);
                }
                output[b, t] = y.to(dtype);
            }
        }
        return output.MoveToOuterDisposeScope();
    }
}
