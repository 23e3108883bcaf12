using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Loom.Distributed;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.DataParallelism;

/// <summary>
/// Data parallelism as PyTorch's DistributedDataParallel does it: every rank holds the whole model, trains on
/// its share of the global batch, and after the backward passes the gradients are averaged over the ranks with
/// all-reduces over flat buckets (about 25 MB each), so that every rank applies the same update.
/// </summary>
/// <remarks>
/// Gradients are copied into each bucket's persistent flat buffer, the buffer is all-reduced in one call
/// (far fewer, larger messages than one per parameter) and divided by the world size, and the mean is copied
/// back into <c>.grad</c>. Clipping and the optimizer then see the global-batch gradient. Unlike DDP the
/// all-reduce runs after the whole backward pass rather than overlapping it (TorchSharp has no gradient hooks).
/// Each bucket also carries one "had a gradient" flag per parameter, so a parameter that no example on some
/// rank reached (an unused expert) gets the others' mean instead of being skipped, and one no rank reached keeps
/// no gradient, as in one process. With one rank every call returns at once.
/// </remarks>
public sealed class DataParallel : IDisposable
{
    /// <summary>PyTorch DDP's default bucket size: 25 MiB.</summary>
    public const long DefaultBucketBytes = 25L * 1024 * 1024;

    private readonly ICommunicator communicator;
    private readonly List<Bucket> buckets = [];

    /// <summary>Groups <paramref name="parameters"/> into buckets of at most <paramref name="bucketBytes"/> (one parameter may exceed it alone).</summary>
    /// <param name="communicator">The data-parallel group; not owned.</param>
    /// <param name="parameters">The model's parameters, in the same order on every rank.</param>
    /// <param name="bucketBytes">Gradient bytes per all-reduce, positive.</param>
    public DataParallel(ICommunicator communicator, IReadOnlyList<Parameter> parameters, long bucketBytes = DefaultBucketBytes)
    {
        this.communicator = communicator ?? throw new ArgumentNullException(nameof(communicator));
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketBytes);
        if (communicator.WorldSize == 1) return; // nothing to reduce: no buffers
        var current = new List<Parameter>();
        long bytes = 0;
        foreach (var p in parameters)
        {
            long size = p.numel() * p.ElementSize;
            bool fits = current.Count == 0 || (bytes + size <= bucketBytes && current[0].dtype == p.dtype && current[0].device_type == p.device_type && current[0].device_index == p.device_index);
            if (!fits)
            {
                buckets.Add(new Bucket(current));
                current = [];
                bytes = 0;
            }
            current.Add(p);
            bytes += size;
        }
        if (current.Count > 0) buckets.Add(new Bucket(current));
    }

    /// <summary>The communicator of the data-parallel group.</summary>
    public ICommunicator Communicator => communicator;

    /// <summary>The number of all-reduces per update (0 with one rank).</summary>
    public int BucketCount => buckets.Count;

    /// <summary>Replaces every parameter's gradient by its mean over the ranks (see the remarks).</summary>
    public void AverageGradients()
    {
        foreach (var bucket in buckets) bucket.Average(communicator);
    }

    /// <summary>Copies rank 0's parameters to every rank, so that all start from the same weights whatever each loaded.</summary>
    public void BroadcastParameters(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (communicator.WorldSize == 1) return;
        using var noGrad = no_grad();
        foreach (var p in parameters) communicator.Broadcast(p, root: 0);
    }

    /// <summary>Replaces each of <paramref name="tensors"/> (metric sums) by its mean over the ranks.</summary>
    public void AverageMetrics(IEnumerable<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (communicator.WorldSize == 1) return;
        foreach (var t in tensors) communicator.AllReduceAverage(t);
    }

    /// <summary>
    /// Checks that every rank resolved the same config (its JSON): a rank launched with other arguments or
    /// files would train a different model or data and silently corrupt the average.
    /// </summary>
    /// <exception cref="ErrorOnEveryRankException">A rank's config differs from rank 0's; every rank throws it, naming the rank.</exception>
    public static void CheckSameConfig(ICommunicator communicator, string configJson)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentNullException.ThrowIfNull(configJson);
        if (communicator.WorldSize == 1) return;
        long hash = BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes(configJson)), 0);
        var hashes = communicator.AllGather(hash);
        for (int rank = 1; rank < hashes.Length; rank++)
        {
            if (hashes[rank] != hashes[0])
                throw new ErrorOnEveryRankException(string.Create(CultureInfo.InvariantCulture,
                    $"rank {rank} resolved a different config from rank 0's (config hash {hashes[rank]:x16} vs {hashes[0]:x16}): launch every rank with the same arguments, config files and --set overrides"));
        }
    }

    /// <summary>Frees the buckets' buffers.</summary>
    public void Dispose()
    {
        foreach (var b in buckets) b.Dispose();
        buckets.Clear();
    }

    /// <summary>Parameters of one dtype and device whose gradients travel in one flat buffer.</summary>
    private sealed class Bucket : IDisposable
    {
        private readonly Parameter[] parameters;
        private readonly long[] offsets;
        private readonly Tensor buffer; // (N + P): the N gradient elements, then one flag per parameter
        private readonly long flagsAt;

        public Bucket(List<Parameter> parameters)
        {
            this.parameters = [.. parameters];
            offsets = new long[this.parameters.Length];
            long n = 0;
            for (int i = 0; i < offsets.Length; i++)
            {
                offsets[i] = n;
                n += this.parameters[i].numel();
            }
            flagsAt = n;
            var first = this.parameters[0];
            buffer = zeros(n + this.parameters.Length, first.dtype, first.device).DetachFromDisposeScope();
        }

        public void Average(ICommunicator communicator)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            bool allPresent = true;
            for (int i = 0; i < parameters.Length; i++)
            {
                var slot = buffer.narrow(0, offsets[i], parameters[i].numel()); // (numel)
                if (parameters[i].grad is { } grad)
                {
                    slot.copy_(grad.reshape(-1));
                    buffer.narrow(0, flagsAt + i, 1).fill_(1);
                }
                else
                {
                    slot.zero_();
                    buffer.narrow(0, flagsAt + i, 1).fill_(0);
                    allPresent = false;
                }
            }
            communicator.AllReduce(buffer);
            buffer.div_(communicator.WorldSize);
            // Only when this rank lacked a gradient does it need to know whether another rank had one.
            float[]? flags = allPresent ? null : buffer.narrow(0, flagsAt, parameters.Length).to(float32).cpu().data<float>().ToArray();
            for (int i = 0; i < parameters.Length; i++)
            {
                var p = parameters[i];
                var mean = buffer.narrow(0, offsets[i], p.numel()).view(p.shape);
                if (p.grad is { } grad) grad.copy_(mean);
                else if (flags![i] > 0) p.grad = mean.clone();
            }
        }

        public void Dispose() => buffer.Dispose();
    }
}
