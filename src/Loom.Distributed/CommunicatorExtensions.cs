using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>Collectives built from the <see cref="ICommunicator"/> primitives.</summary>
public static class CommunicatorExtensions
{
    /// <summary>
    /// Replaces a floating-point <paramref name="tensor"/> by the mean over ranks: a sum all-reduce divided by
    /// the world size (what data parallelism does to gradients).
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is not floating point (a mean of integers is not an integer).</exception>
    public static void AllReduceAverage(this ICommunicator communicator, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentNullException.ThrowIfNull(tensor);
        if (!is_floating_point(tensor))
            throw new ArgumentException($"AllReduceAverage needs a floating-point tensor, got {tensor.dtype}: all-reduce a sum and divide where you need it");
        communicator.AllReduce(tensor);
        if (communicator.WorldSize > 1)
            using (no_grad()) tensor.div_(communicator.WorldSize);
    }

    /// <summary>Every rank's <paramref name="value"/>, indexed by rank.</summary>
    public static long[] AllGather(this ICommunicator communicator, long value)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        var device = communicator.PreferredDevice();
        using var input = tensor(new[] { value }, int64, device);                 // (1)
        using var output = zeros(communicator.WorldSize, int64, device);          // (W)
        communicator.AllGather(input, output);
        using var host = output.cpu();
        return host.data<long>().ToArray();
    }

    /// <summary>True on every rank when <paramref name="flag"/> is true on any rank (a max all-reduce).</summary>
    public static bool Any(this ICommunicator communicator, bool flag)
    {
        ArgumentNullException.ThrowIfNull(communicator);
        if (communicator.WorldSize == 1) return flag;
        using var t = tensor(new[] { flag ? 1L : 0L }, int64, communicator.PreferredDevice()); // (1)
        communicator.AllReduce(t, ReduceOp.Max);
        using var host = t.cpu();
        return host.item<long>() != 0;
    }

    /// <summary>Where this communicator's tensors must live: CUDA for NCCL, else the CPU.</summary>
    public static Device PreferredDevice(this ICommunicator communicator) =>
        communicator is NcclCommunicator nccl ? nccl.Device : CPU;
}
