using System.Globalization;
using Loom.Distributed;
using Loom.Training.Optimization;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.DataParallelism;

/// <summary>What one rank holds of the model's training state, in bytes.</summary>
/// <param name="Rank">The rank measured.</param>
/// <param name="ParameterBytes">Parameter elements materialised between steps.</param>
/// <param name="GradientBytes">Gradient elements held once the gradients are reduced (before the optimizer step).</param>
/// <param name="OptimizerStateBytes">The optimizer's state tensors.</param>
public sealed record ShardingMemory(int Rank, long ParameterBytes, long GradientBytes, long OptimizerStateBytes)
{
    /// <summary>Parameters, gradients and optimizer state together.</summary>
    public long TotalBytes => ParameterBytes + GradientBytes + OptimizerStateBytes;

    /// <summary>
    /// The process's peak resident memory so far (Linux VmHWM): everything above, plus activations, libtorch's
    /// buffers and the runtime; 0 when not measured.
    /// </summary>
    public long PeakResidentBytes { get; init; }

    /// <summary>Measures <paramref name="parameters"/>, their current gradients and <paramref name="optimizer"/>'s state.</summary>
    public static ShardingMemory Measure(int rank, IEnumerable<Parameter> parameters, IOptimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(optimizer);
        var list = parameters.ToList();
        return new ShardingMemory(rank, list.Sum(p => p.numel() * p.ElementSize), GradientBytesOf(list), optimizer.StateTensors().Values.Sum(t => t.numel() * t.ElementSize))
        {
            PeakResidentBytes = System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64,
        };
    }

    /// <summary>The bytes of the gradients that <paramref name="parameters"/> hold now.</summary>
    public static long GradientBytesOf(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        long bytes = 0;
        foreach (var p in parameters)
        {
            using var g = p.grad;
            if (g is not null) bytes += g.numel() * g.ElementSize;
        }
        return bytes;
    }

    /// <summary>A log line: "rank R: parameters P B, gradients G B, optimizer state S B, peak resident M B".</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"rank {Rank}: parameters {ParameterBytes} B, gradients {GradientBytes} B, optimizer state {OptimizerStateBytes} B, peak resident {PeakResidentBytes} B");
}

/// <summary>
/// Sharded data parallelism (ZeRO, Rajbhandari et al. 2020) by whole parameters: every parameter has one owner rank
/// (parameters are dealt largest first to the least-loaded rank), which alone keeps its optimizer state and
/// applies its update. <see cref="Stage"/> 1 shards the optimizer state (gradients are all-reduced in full, the
/// owners step, then broadcast their updated parameters); 2 also shards the gradients (one reduce-scatter over a
/// flat buffer laid out by owner leaves each rank the averaged gradients of what it owns); 3 also shards the
/// parameters (between steps a rank keeps only the parameters it owns; the others are gathered before the forward
/// pass and freed after the step).
/// </summary>
/// <remarks>
/// Partitioning whole parameters (rather than slices of one flat buffer) works for every optimizer, Adafactor's
/// factored row/column statistics included, at the price of an uneven split when one parameter is large. Stage 3
/// gathers all parameters before the forward pass and frees them after the step, not layer by layer (TorchSharp
/// has no module pre-forward hooks here), so its peak memory during a step is that of plain data parallelism; the
/// saving is between steps and in the optimizer state. Global-norm clipping all-reduces the squared norms of the
/// owned gradients, so every rank clips by the global norm. A parameter that no rank's examples reached keeps no
/// gradient, as in one process. Collectives are per tensor for broadcasts and one reduce-scatter per dtype per step.
/// </remarks>
public sealed class ZeroSharding : IDisposable
{
    // Same guard as torch.nn.utils.clip_grad_norm_ and GradientClipping.
    private const double NormGuard = 1e-6;

    private readonly ICommunicator communicator;
    private readonly string[] names;
    private readonly Parameter[] parameters;
    private readonly long[][] shapes;
    private readonly int[] owners;
    private readonly DataParallel? allReduce; // stage 1: the full gradient all-reduce
    private bool released;

    /// <summary>Partitions <paramref name="parameters"/> over the ranks of <paramref name="communicator"/>.</summary>
    /// <param name="communicator">The data-parallel group; not owned.</param>
    /// <param name="parameters">The model's named parameters, in the same order on every rank.</param>
    /// <param name="stage">The ZeRO stage: 1, 2 or 3.</param>
    /// <exception cref="ArgumentOutOfRangeException">The stage is not 1, 2 or 3.</exception>
    public ZeroSharding(ICommunicator communicator, IReadOnlyList<(string Name, Parameter Param)> parameters, int stage)
    {
        this.communicator = communicator ?? throw new ArgumentNullException(nameof(communicator));
        ArgumentNullException.ThrowIfNull(parameters);
        if (stage is < 1 or > 3)
            throw new ArgumentOutOfRangeException(nameof(stage), stage, $"ZeRO stage {stage} is not sharded: pass 1, 2 or 3 (0 is plain data parallelism, DataParallel)");
        Stage = stage;
        names = [.. parameters.Select(p => p.Name)];
        this.parameters = [.. parameters.Select(p => p.Param)];
        shapes = [.. this.parameters.Select(p => p.shape)];
        owners = Partition([.. this.parameters.Select(p => p.numel() * p.ElementSize)], communicator.WorldSize);
        if (stage == 1) allReduce = new DataParallel(communicator, this.parameters);
    }

    /// <summary>The ZeRO stage (1, 2 or 3).</summary>
    public int Stage { get; }

    /// <summary>The owner rank of each parameter, in parameter order.</summary>
    public IReadOnlyList<int> Owners => owners;

    /// <summary>The named parameters this rank owns (and keeps optimizer state for), in parameter order.</summary>
    public IEnumerable<(string Name, Parameter Param)> Owned =>
        Enumerable.Range(0, parameters.Length).Where(i => owners[i] == communicator.Rank).Select(i => (names[i], parameters[i]));

    /// <summary>Bytes of gradient this rank held after the last <see cref="ReduceAndClipGradients"/>.</summary>
    public long LastGradientBytes { get; private set; }

    /// <summary>
    /// Deals parameters of the given sizes to <paramref name="worldSize"/> ranks: largest first, each to the rank
    /// holding the fewest bytes so far (the lowest rank on a tie). Deterministic, so every rank agrees.
    /// </summary>
    public static int[] Partition(IReadOnlyList<long> bytes, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        var load = new long[worldSize];
        var owner = new int[bytes.Count];
        foreach (int i in Enumerable.Range(0, bytes.Count).OrderByDescending(i => bytes[i]).ThenBy(i => i))
        {
            int rank = 0;
            for (int r = 1; r < worldSize; r++)
                if (load[r] < load[rank]) rank = r;
            owner[i] = rank;
            load[rank] += bytes[i];
        }
        return owner;
    }

    /// <summary>Stage 3: materialises every parameter (each owner broadcasts its own); a no-op when they already are.</summary>
    public void GatherParameters()
    {
        if (!released) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            if (owners[i] == communicator.Rank)
            {
                communicator.Broadcast(p, owners[i]);
                continue;
            }
            var full = empty(shapes[i], p.dtype, p.device); // (parameter shape)
            communicator.Broadcast(full, owners[i]);
            p.set_(full);
        }
        released = false;
    }

    /// <summary>
    /// Averages the gradients over the ranks so that each owned parameter holds the global-batch mean (stage 1: an
    /// all-reduce; stages 2 and 3: a reduce-scatter by owner), drops the gradients of parameters owned elsewhere,
    /// and clips the owned ones by the global norm (the all-reduced sum of their squared norms).
    /// </summary>
    /// <param name="maxNorm">The largest global norm to allow (double.MaxValue measures without clipping).</param>
    /// <returns>The pre-clip global norm, a 0-dim float32 tensor on the first parameter's device.</returns>
    public Tensor ReduceAndClipGradients(double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        if (allReduce is not null) allReduce.AverageGradients();
        else ReduceScatterGradients();
        // Stage 1 held the whole averaged gradient (as DeepSpeed's stage 1); stages 2 and 3 hold only the owned part.
        if (Stage == 1) LastGradientBytes = ShardingMemory.GradientBytesOf(parameters);
        for (int i = 0; i < parameters.Length; i++)
            if (owners[i] != communicator.Rank) parameters[i].grad = null;
        if (Stage >= 2) LastGradientBytes = ShardingMemory.GradientBytesOf(parameters);

        var commDevice = communicator.PreferredDevice();
        var squares = zeros(1, float64, commDevice); // (1) sum of the owned gradients' squared norms
        var owned = new List<Tensor>();
        for (int i = 0; i < parameters.Length; i++)
        {
            if (owners[i] != communicator.Rank || parameters[i].grad is not { } g) continue;
            owned.Add(g);
            squares.add_(linalg.vector_norm(g.to(float32)).to(float64).square().reshape(1).to(commDevice));
        }
        communicator.AllReduce(squares);
        var device = parameters.Length > 0 ? parameters[0].device : CPU;
        var total = squares.sqrt().to(float32).to(device).reshape([]);            // []
        var coefficient = (maxNorm / (total + NormGuard)).clamp_max_(1.0);       // []
        foreach (var g in owned) g.mul_(coefficient.to(g.dtype, g.device));
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// After the owners' optimizer step: stages 1 and 2 broadcast every parameter from its owner, so that all ranks
    /// hold the updated model; stage 3 frees the parameters owned elsewhere instead.
    /// </summary>
    public void AfterStep()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            if (Stage < 3) communicator.Broadcast(p, owners[i]);
            else if (owners[i] != communicator.Rank) p.set_(empty(0, p.dtype, p.device));
        }
        released = Stage == 3;
    }

    /// <summary>
    /// The complete optimizer state, as one process's optimizer would name it, on rank 0 (collective: every rank
    /// calls it; the others get an empty dictionary). Each owner broadcasts its parameters' state tensors; the
    /// receiving ranks learn their names and shapes from a throwaway optimizer over that one parameter, made by
    /// <paramref name="create"/>. Parameters must be gathered (<see cref="GatherParameters"/>) first. Tensors
    /// copied from other ranks belong to the caller's dispose scope; rank 0's own are the live state.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> GatherOptimizerState(IOptimizer local, Func<IEnumerable<(string Name, Parameter Param)>, IOptimizer> create)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(create);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var mine = local.StateTensors();
        using var noGrad = no_grad();
        for (int i = 0; i < parameters.Length; i++)
        {
            int owner = owners[i];
            if (owner == communicator.Rank)
            {
                foreach (var (key, t) in mine.Where(s => ParameterNameOf(s.Key) == names[i]))
                {
                    communicator.Broadcast(t, owner);
                    if (communicator.Rank == 0) result[key] = t;
                }
                continue;
            }
            using var template = create([(names[i], parameters[i])]);
            foreach (var (key, t) in template.StateTensors())
            {
                communicator.Broadcast(t, owner);
                if (communicator.Rank == 0) result[key] = t.clone();
            }
        }
        return result;
    }

    /// <summary>The parameter a state key "&lt;parameter&gt;.&lt;slot&gt;" belongs to.</summary>
    internal static string ParameterNameOf(string stateKey)
    {
        int dot = stateKey.LastIndexOf('.');
        return dot < 0 ? stateKey : stateKey[..dot];
    }

    /// <summary>Frees the stage-1 all-reduce buffers.</summary>
    public void Dispose() => allReduce?.Dispose();

    private void ReduceScatterGradients()
    {
        int world = communicator.WorldSize;
        foreach (var group in Enumerable.Range(0, parameters.Length).GroupBy(i => (parameters[i].dtype, parameters[i].device_type, parameters[i].device_index)))
        {
            // Segment r holds rank r's parameters' gradients, then one "had a gradient" flag per parameter.
            var indices = group.ToList();
            var offsets = new Dictionary<int, (long Grad, long Flag)>();
            long longest = 1;
            for (int rank = 0; rank < world; rank++)
            {
                var owned = indices.Where(i => owners[i] == rank).ToList();
                long at = 0;
                foreach (int i in owned)
                {
                    offsets[i] = (at, 0);
                    at += parameters[i].numel();
                }
                foreach (int i in owned) offsets[i] = (offsets[i].Grad, at++);
                longest = Math.Max(longest, at);
            }
            var first = parameters[indices[0]];
            var buffer = zeros(world * longest, first.dtype, first.device); // (W · longest)
            foreach (int i in indices)
            {
                if (parameters[i].grad is not { } grad) continue;
                long segment = owners[i] * longest;
                buffer.narrow(0, segment + offsets[i].Grad, parameters[i].numel()).copy_(grad.reshape(-1));
                buffer.narrow(0, segment + offsets[i].Flag, 1).fill_(1);
            }
            var mine = zeros(longest, first.dtype, first.device); // (longest)
            communicator.ReduceScatter(buffer, mine);
            mine.div_(world);
            var mineIndices = indices.Where(i => owners[i] == communicator.Rank).ToList();
            if (mineIndices.Count == 0) continue;
            float[] flags = mine.to(float32).cpu().data<float>().ToArray();
            foreach (int i in mineIndices)
            {
                var p = parameters[i];
                var mean = mine.narrow(0, offsets[i].Grad, p.numel()).view(p.shape);
                if (p.grad is { } grad) grad.copy_(mean);
                else if (flags[offsets[i].Flag] > 0) p.grad = mean.clone();
            }
        }
    }
}

/// <summary>
/// The optimizer of a ZeRO-sharded rank: an optimizer over the parameters this rank owns, which loads its share of
/// a complete (one-process) optimizer state and clears every parameter's gradient.
/// </summary>
public sealed class ShardedOptimizer : IOptimizer
{
    private readonly IOptimizer inner;
    private readonly IReadOnlyList<Parameter> all;
    private readonly HashSet<string> allNames;
    private readonly HashSet<string> ownedNames;

    /// <summary>Wraps <paramref name="inner"/>, the optimizer over <paramref name="owned"/>, one rank's share of <paramref name="all"/>.</summary>
    public ShardedOptimizer(IOptimizer inner, IReadOnlyList<(string Name, Parameter Param)> all, IEnumerable<string> owned)
    {
        this.inner = inner ?? throw new ArgumentNullException(nameof(inner));
        ArgumentNullException.ThrowIfNull(all);
        ArgumentNullException.ThrowIfNull(owned);
        this.all = [.. all.Select(p => p.Param)];
        allNames = new HashSet<string>(all.Select(p => p.Name), StringComparer.Ordinal);
        ownedNames = new HashSet<string>(owned, StringComparer.Ordinal);
    }

    /// <summary>The optimizer over the owned parameters.</summary>
    public IOptimizer Inner => inner;

    /// <inheritdoc/>
    public long StepCount => inner.StepCount;

    /// <inheritdoc/>
    public void Step(double learningRate) => inner.Step(learningRate);

    /// <summary>Clears the gradient of every parameter of the model, owned or not.</summary>
    public void ZeroGrad()
    {
        foreach (var p in all) p.grad = null;
    }

    /// <summary>The state of the owned parameters only.</summary>
    public IReadOnlyDictionary<string, Tensor> StateTensors() => inner.StateTensors();

    /// <summary>
    /// Loads the owned parameters' share of a complete optimizer state (as one process saves it); keys of other
    /// ranks' parameters are skipped, keys of no parameter are an error.
    /// </summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        ArgumentNullException.ThrowIfNull(state);
        var share = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, t) in state)
        {
            string name = ZeroSharding.ParameterNameOf(key);
            if (!allNames.Contains(name)) throw new ArgumentException($"unexpected optimizer state key '{key}'", nameof(state));
            if (ownedNames.Contains(name)) share[key] = t;
        }
        inner.LoadState(share, stepCount);
    }

    /// <summary>Frees the inner optimizer's state.</summary>
    public void Dispose() => inner.Dispose();
}
