using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>
/// The world of one process: every collective is the identity (all-reduce and broadcast leave the tensor
/// as it is; reduce-scatter and all-gather copy input to output). What a run that was not launched by
/// <c>mpirun</c> or <c>srun</c> gets, so that training code needs no "if distributed" branches.
/// </summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    /// <inheritdoc />
    public int Rank => 0;

    /// <inheritdoc />
    public int WorldSize => 1;

    /// <inheritdoc />
    public string Backend => "single";

    /// <inheritdoc />
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => ArgumentNullException.ThrowIfNull(tensor);

    /// <inheritdoc />
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveChecks.ReduceScatter(input, output, WorldSize);
        Copy(input, output);
    }

    /// <inheritdoc />
    public void AllGather(Tensor input, Tensor output)
    {
        CollectiveChecks.AllGather(input, output, WorldSize);
        Copy(input, output);
    }

    /// <inheritdoc />
    public void Broadcast(Tensor tensor, int root)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        CollectiveChecks.Root(root, WorldSize);
    }

    /// <inheritdoc />
    public void Barrier()
    {
    }

    /// <inheritdoc />
    public ICommunicator Split(int color, int key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(color);
        return new SingleProcessCommunicator();
    }

    /// <inheritdoc />
    public void Abort(int exitCode) => Environment.Exit(exitCode);

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static void Copy(Tensor input, Tensor output)
    {
        using var noGrad = no_grad();
        using var flat = input.reshape(output.shape);
        output.copy_(flat);
    }
}
