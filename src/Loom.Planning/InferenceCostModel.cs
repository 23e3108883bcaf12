namespace Loom.Planning;

/// <summary>Bytes per stored weight.</summary>
public enum WeightFormat
{
    /// <summary>bfloat16, 2 bytes.</summary>
    Bf16,

    /// <summary>int8 weight-only quantization, 1 byte; matmuls still run in bf16 (as in the paper).</summary>
    Int8,
}

/// <summary>What the cost model is asked about: a model on a system, and how its numbers are stored.</summary>
public sealed record CostModelOptions
{
    /// <summary>The model.</summary>
    public ModelShape Model { get; }

    /// <summary>The chips and their wiring.</summary>
    public Topology Topology { get; }

    /// <summary>Weight format (int8 halves the weight bytes, not the FLOPs).</summary>
    public WeightFormat Weights { get; init; } = WeightFormat.Bf16;

    /// <summary>Bytes per cached key or value element (2 for bf16, the paper's setting; 1 for an int8 cache).</summary>
    public int KvCacheBytes { get; init; } = 2;

    /// <summary>Fraction of peak FLOP/s the matmuls reach (1: the paper's roofline).</summary>
    public double FlopsEfficiency { get; init; } = 1;

    /// <summary>Fraction of peak HBM bandwidth reached (1: the roofline).</summary>
    public double MemoryEfficiency { get; init; } = 1;

    /// <summary>
    /// False (default, the paper's accounting): compute and memory loads overlap with each other but not with
    /// communication, latency = max(compute, weight + KV load) + communication. True: all three overlap, latency = max of the three.
    /// </summary>
    public bool OverlapCommunication { get; init; }

    /// <summary>Creates the options for <paramref name="model"/> on <paramref name="topology"/>.</summary>
    public CostModelOptions(ModelShape model, Topology topology)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Topology = topology ?? throw new ArgumentNullException(nameof(topology));
    }

    /// <summary>Throws on a nonsensical setting; returns the options.</summary>
    /// <exception cref="ArgumentException">A byte count or efficiency out of range.</exception>
    public CostModelOptions Validate()
    {
        if (KvCacheBytes is not (1 or 2 or 4)) throw new ArgumentException($"KV cache bytes {KvCacheBytes} must be 1 (int8), 2 (bf16) or 4 (fp32)");
        if (!(FlopsEfficiency > 0 && FlopsEfficiency <= 1)) throw new ArgumentException($"FLOP/s efficiency {FlopsEfficiency} must be in (0, 1]");
        if (!(MemoryEfficiency > 0 && MemoryEfficiency <= 1)) throw new ArgumentException($"memory efficiency {MemoryEfficiency} must be in (0, 1]");
        return this;
    }

    /// <summary>Bytes per stored weight.</summary>
    public int WeightBytes => Weights == WeightFormat.Int8 ? 1 : 2;
}

/// <summary>One forward pass: <see cref="Batch"/> sequences each adding <see cref="Tokens"/> tokens after <see cref="Context"/> cached ones.</summary>
/// <param name="Batch">B: sequences in the batch.</param>
/// <param name="Tokens">L: tokens per sequence in this pass (the input length for prefill, 1 for a decode step).</param>
/// <param name="Context">Tokens per sequence already in the KV cache.</param>
public sealed record InferencePass(int Batch, int Tokens, long Context)
{
    /// <summary>Throws unless batch and tokens are positive and context is not negative; returns the pass.</summary>
    /// <exception cref="ArgumentException">A nonsensical size.</exception>
    public InferencePass Validate()
    {
        if (Batch <= 0) throw new ArgumentException($"batch {Batch} must be a positive integer");
        if (Tokens <= 0) throw new ArgumentException($"tokens per pass {Tokens} must be a positive integer");
        if (Context < 0) throw new ArgumentException($"context {Context} must not be negative");
        return this;
    }
}

/// <summary>What one layout costs for one pass; a refused layout has <see cref="Feasible"/> false and a one-line <see cref="Reason"/>.</summary>
public sealed record PassCost
{
    /// <summary>The layout.</summary>
    public required Layout Layout { get; init; }

    /// <summary>How the mesh axes were split, e.g. "E over x | F over yz".</summary>
    public string Mesh { get; init; } = "";

    /// <summary>Whether the layout can run at all.</summary>
    public bool Feasible => Reason is null;

    /// <summary>Why it cannot (null when it can).</summary>
    public string? Reason { get; init; }

    /// <summary>Useful FLOPs of the pass: 2 × matmul parameters × tokens + attention.</summary>
    public double Flops { get; init; }

    /// <summary>Seconds of matmul and attention arithmetic on the busiest chip.</summary>
    public double ComputeSeconds { get; init; }

    /// <summary>Seconds to stream this chip's weights from HBM.</summary>
    public double WeightLoadSeconds { get; init; }

    /// <summary>Seconds to stream this chip's part of the KV cache from HBM.</summary>
    public double KvLoadSeconds { get; init; }

    /// <summary>Seconds of all-gathers, reduce-scatters and all-to-alls.</summary>
    public double CommunicationSeconds { get; init; }

    /// <summary>Bytes each chip receives in collectives over the pass.</summary>
    public double CommunicationBytesPerChip { get; init; }

    /// <summary>Weight bytes stored per chip.</summary>
    public double WeightBytesPerChip { get; init; }

    /// <summary>KV-cache bytes stored per chip at the end of the pass.</summary>
    public double KvBytesPerChip { get; init; }

    /// <summary>Latency of the pass (see <see cref="CostModelOptions.OverlapCommunication"/>).</summary>
    public double LatencySeconds { get; init; }

    /// <summary>Model FLOPs utilisation: <see cref="Flops"/> / (chips × peak × latency).</summary>
    public double Mfu { get; init; }
}

/// <summary>
/// The analytical inference cost model of Pope et al., "Efficiently Scaling Transformer Inference" (2022):
/// for a layout, the compute time, the time to load weights and KV cache from HBM, and the time of the
/// collectives the layout needs, per pass.
/// </summary>
/// <remarks>
/// Left out, as in the paper's section 3 model: element-wise work, norms, softmax, the input embedding's
/// lookup and the logits' collectives, and per-message latency (every collective is bandwidth-bound).
/// </remarks>
public sealed class InferenceCostModel
{
    private const int ActivationBytes = 2; // activations travel in bf16

    /// <summary>Creates a cost model with <paramref name="options"/>.</summary>
    public InferenceCostModel(CostModelOptions options) => Options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();

    /// <summary>The model, system and formats.</summary>
    public CostModelOptions Options { get; }

    private ModelShape M => Options.Model;
    private Topology Topo => Options.Topology;
    private HardwareSpec Hw => Topo.Hardware;

    /// <summary>Every layout for <paramref name="pass"/>, feasible ones fastest first, then the refused ones.</summary>
    public IReadOnlyList<PassCost> Rank(InferencePass pass) =>
        [.. Layout.All.Select(l => Evaluate(l, pass)).OrderBy(c => c.Feasible ? 0 : 1).ThenBy(c => c.LatencySeconds).ThenByDescending(c => c.Mfu)];

    /// <summary>The cheapest feasible layout for <paramref name="pass"/>, or null when none is.</summary>
    public PassCost? Best(InferencePass pass) => Rank(pass).FirstOrDefault(c => c.Feasible);

    /// <summary>
    /// The cost of <paramref name="layout"/> for <paramref name="pass"/>, at the best split of the mesh axes
    /// between the layout's roles (for 2D weight-stationary, which axes hold E and which F; for the
    /// weight-gathered layouts, which axes the weights are gathered over).
    /// </summary>
    public PassCost Evaluate(Layout layout, InferencePass pass)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(pass);
        pass.Validate();
        var splits = Splits(layout.FeedForward, out string? noSplit);
        if (noSplit is not null) return new PassCost { Layout = layout, Reason = noSplit, LatencySeconds = double.PositiveInfinity };
        PassCost? best = null, firstRefusal = null;
        foreach (var (outer, inner) in splits)
        {
            PassCost cost = Evaluate(layout, pass, outer, inner);
            if (!cost.Feasible) firstRefusal ??= cost;
            else if (best is null || cost.LatencySeconds < best.LatencySeconds) best = cost;
        }
        return best ?? firstRefusal!;
    }

    /// <summary>The mesh splits a feed-forward layout can use: (E axes or gather axes, F axes or the rest).</summary>
    private List<(MeshAxis[] Outer, MeshAxis[] Inner)> Splits(FeedForwardLayout ff, out string? refusal)
    {
        var axes = Topo.Axes;
        var subsets = Enumerable.Range(0, 1 << axes.Count)
            .Select(mask => (Outer: axes.Where((_, i) => (mask >> i & 1) == 1).ToArray(), Inner: axes.Where((_, i) => (mask >> i & 1) == 0).ToArray()))
            .ToList();
        refusal = null;
        switch (ff)
        {
            case FeedForwardLayout.WeightStationary1D:
                return [([], [.. axes])];
            case FeedForwardLayout.WeightStationary2D:
                if (axes.Count < 2) refusal = $"2D weight-stationary needs two mesh axes; {Topo.Chips} {Hw.Name} chips have {axes.Count}";
                return [.. subsets.Where(s => s.Outer.Length > 0 && s.Inner.Length > 0)];
            case FeedForwardLayout.WeightGatheredX:
                if (axes.Count < 1) refusal = "weight gathering needs more than one chip";
                return [.. subsets.Where(s => s.Outer.Length == 1)];
            case FeedForwardLayout.WeightGatheredXY:
                if (axes.Count < 3) refusal = $"XY weight-gathering needs three mesh axes; {Topo.Chips} {Hw.Name} chips form {Topo.Shape}";
                return [.. subsets.Where(s => s.Outer.Length == 2)];
            default:
                if (axes.Count < 1) refusal = "weight gathering needs more than one chip";
                return [([.. axes], [])];
        }
    }

    private static int Product(IEnumerable<MeshAxis> axes) => axes.Aggregate(1, (n, a) => n * a.Size);

    private static string Names(IEnumerable<MeshAxis> axes) => axes.Any() ? string.Join(axes.All(a => a.Name.Length == 1) ? "" : "+", axes.Select(a => a.Name)) + "=" + Product(axes) : "none";

    private PassCost Evaluate(Layout layout, InferencePass pass, MeshAxis[] outer, MeshAxis[] inner)
    {
        int n = Topo.Chips;
        bool gathered = layout.FeedForward is FeedForwardLayout.WeightGatheredX or FeedForwardLayout.WeightGatheredXY or FeedForwardLayout.WeightGatheredXYZ;
        // Weight-stationary: E over `outer` (none for 1D), F and heads over `inner`.
        // Weight-gathered: weights gathered and the batch split over `outer` (N chips), 1D weight-stationary over `inner` (M chips).
        int nOuter = Product(outer), nInner = Product(inner);
        string mesh = gathered ? $"gather {Names(outer)} | F {Names(inner)}" : $"E {Names(outer)} | F {Names(inner)}";
        long B = pass.Batch, T = pass.Tokens, C = pass.Context, E = M.ModelDim;
        int wb = Options.WeightBytes, kvb = Options.KvCacheBytes;

        string? reason = null;
        if (M.FfDim % nInner != 0) reason = $"d_ff {M.FfDim} does not split over {nInner} chips ({Names(inner)})";
        else if (M.QueryDim % nInner != 0) reason = $"heads × d_head = {M.QueryDim} does not split over {nInner} chips ({Names(inner)})";
        else if (!gathered && E % nOuter != 0) reason = $"d_model {E} does not split over {nOuter} chips ({Names(outer)})";
        else if (gathered && B % nOuter != 0) reason = $"batch {B} does not split over the {nOuter} chips the weights are gathered over ({Names(outer)}); weight-gathered layouts need a batch that is a multiple of them";
        else if (layout.Attention == AttentionSharding.Heads && M.Heads % nInner != 0)
            reason = $"{M.Heads} heads do not split over {nInner} chips ({Names(inner)}); shard attention over the batch instead";

        // Attention: the share of the attention FLOPs and of the KV cache on one chip.
        int batchSplit = gathered ? nOuter : 1;
        double attentionShare = layout.Attention == AttentionSharding.Batch
            ? Math.Ceiling((double)B / n) / B
            : 1.0 / ((double)nInner * batchSplit);
        double kvShare = layout.Attention == AttentionSharding.Batch
            ? Math.Ceiling((double)B / n) / B
            : 1.0 / ((double)Gcd(M.KvHeads, nInner) * batchSplit); // multi-query: one K/V head, copied to every head shard

        // Memory: stored bytes and capacity.
        double storedWeights = (double)M.StoredParameters * wb / n;
        double gatheredBuffer = gathered ? (double)M.LayerParameters * wb / nInner : 0;
        double kvStored = (double)M.KvElementsPerToken * B * (C + T) * kvb * kvShare;
        double needed = storedWeights + gatheredBuffer + kvStored;
        if (reason is null && needed > Hw.HbmCapacity)
            reason = $"needs {needed / 1e9:F1} GB per chip (weights {storedWeights / 1e9:F1}, KV cache {kvStored / 1e9:F1}{(gathered ? $", gathered layer {gatheredBuffer / 1e9:F1}" : "")}) but {Hw.Name} has {Hw.HbmCapacity / 1e9:F1} GB";

        // Compute: every chip does 1/n of the matmuls; attention by its share.
        double matmulFlops = 2.0 * M.MatmulParameters * B * T;
        double attentionFlops = M.AttentionFlopsPerKey * B * (T * (double)C + T * (T + 1) / 2.0);
        double computeSeconds = (matmulFlops / n + attentionFlops * attentionShare) / (Hw.PeakBf16 * Options.FlopsEfficiency);

        // HBM loads: the weights this chip multiplies by (all gathered copies for weight-gathered), and its KV cache.
        double blockWeightsRead = (double)M.Layers * M.LayerParameters * wb / (gathered ? nInner : n);
        double weightRead = blockWeightsRead + (double)M.Vocab * E * wb / n;
        double bandwidth = Hw.HbmBandwidth * Options.MemoryEfficiency;
        double weightSeconds = weightRead / bandwidth, kvSeconds = kvStored / bandwidth;

        // Communication per layer.
        double seconds = 0, bytes = 0;
        void Collective(double bytesPerChip, IReadOnlyList<MeshAxis> over)
        {
            if (Product(over) <= 1) return;
            seconds += Topo.CollectiveSeconds(bytesPerChip, over);
            bytes += bytesPerChip * (1 - 1.0 / Product(over));
        }
        double activations = (double)B * T * E * ActivationBytes; // B·L·E
        foreach (var (fIn, fOut) in Units())
        {
            if (!gathered && nOuter == 1)
            {   // 1D: all-gather the input, reduce-scatter the output, each B·L·E (section 3.2.1: 2BLE)
                Collective(activations, inner);
                Collective(activations, inner);
            }
            else if (!gathered)
            {   // 2D: all-gather(yz) BLE/X, reduce-scatter(x) BLF/YZ, all-gather(x) BLF/YZ, reduce-scatter(yz) BLE/X (section 3.2.2)
                Collective(activations / nOuter, inner);
                Collective((double)B * T * fIn * ActivationBytes / nInner, outer);
                Collective((double)B * T * fOut * ActivationBytes / nInner, outer);
                Collective(activations / nOuter, inner);
            }
            else
            {   // weight-gathered: 1D weight-stationary over the rest, on this chip's B/N sequences
                Collective(activations / nOuter, inner);
                Collective(activations / nOuter, inner);
            }
        }
        if (gathered) Collective((double)M.LayerParameters * wb / nInner, outer); // all-gather the layer's weights (section 3.2.3)
        if (layout.Attention == AttentionSharding.Batch)
        {   // all-to-all Q, K, V from head-split to batch-split and the output back (section 3.3)
            IReadOnlyList<MeshAxis> over = gathered ? inner : Topo.Axes;
            Collective((double)B * T * (M.QueryDim + 2 * M.KvDim) * ActivationBytes / n, over);
            Collective((double)B * T * M.QueryDim * ActivationBytes / n, over);
        }
        double commSeconds = seconds * M.Layers, commBytes = bytes * M.Layers;

        double memorySeconds = weightSeconds + kvSeconds;
        double latency = Options.OverlapCommunication
            ? Math.Max(Math.Max(computeSeconds, memorySeconds), commSeconds)
            : Math.Max(computeSeconds, memorySeconds) + commSeconds;
        double flops = matmulFlops + attentionFlops;
        return new PassCost
        {
            Layout = layout, Mesh = mesh, Reason = reason, Flops = flops,
            ComputeSeconds = computeSeconds, WeightLoadSeconds = weightSeconds, KvLoadSeconds = kvSeconds,
            CommunicationSeconds = commSeconds, CommunicationBytesPerChip = commBytes,
            WeightBytesPerChip = storedWeights, KvBytesPerChip = kvStored,
            LatencySeconds = reason is null ? latency : double.PositiveInfinity,
            Mfu = reason is null ? flops / (n * Hw.PeakBf16 * latency) : 0,
        };
    }

    /// <summary>The matmul groups between collectives, as (F-side input width, F-side output width): one fused group for a parallel block, attention then MLP for a serial one.</summary>
    private IEnumerable<(long FIn, long FOut)> Units()
    {
        long mlpIn = (M.GatedMlp ? 2L : 1L) * M.FfDim, qkv = M.QueryDim + 2 * M.KvDim;
        if (M.ParallelBlock) return [(mlpIn + qkv, M.FfDim + M.QueryDim)];
        return [(qkv, M.QueryDim), (mlpIn, M.FfDim)];
    }

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);
}
