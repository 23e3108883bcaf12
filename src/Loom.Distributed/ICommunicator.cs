using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>The reduction a collective applies element-wise across ranks.</summary>
public enum ReduceOp
{
    /// <summary>The sum over ranks.</summary>
    Sum,

    /// <summary>The largest value over ranks.</summary>
    Max,

    /// <summary>The smallest value over ranks.</summary>
    Min,
}

/// <summary>
/// A group of <see cref="WorldSize"/> processes ("ranks") that exchange tensors with collectives, as
/// <c>torch.distributed</c>'s process group does. Every rank must call the same collectives in the same
/// order with tensors of the same shape and dtype; a rank that skips one leaves the others waiting.
/// </summary>
/// <remarks>
/// The trainer receives a communicator (it never builds one): <see cref="Communicators.FromEnvironment"/>
/// picks the backend from how the process was launched. Collectives are blocking: when a call returns, its
/// result is in the tensor. Calls are serialized; do not call one communicator from two threads at once.
/// </remarks>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's rank, in <c>[0, WorldSize)</c>.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int WorldSize { get; }

    /// <summary>The backend's name, for logs: "single", "mpi" or "nccl".</summary>
    string Backend { get; }

    /// <summary>Replaces <paramref name="tensor"/>, on every rank, by the element-wise reduction of all ranks' tensors.</summary>
    /// <param name="tensor">The same shape and dtype on every rank; overwritten in place.</param>
    /// <param name="op">The reduction (sum by default; see <see cref="CommunicatorExtensions.AllReduceAverage"/> for the mean).</param>
    void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// Reduces <paramref name="input"/> element-wise across ranks and leaves chunk r of the flattened result
    /// in rank r's <paramref name="output"/> (torch.distributed's <c>reduce_scatter_tensor</c>).
    /// </summary>
    /// <param name="input">WorldSize × output's elements, the same on every rank in shape and dtype.</param>
    /// <param name="output">Receives this rank's chunk; the input's dtype; must not overlap the input.</param>
    /// <param name="op">The reduction.</param>
    void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// Concatenates every rank's <paramref name="input"/> into <paramref name="output"/>, rank 0's elements
    /// first (torch.distributed's <c>all_gather_into_tensor</c>).
    /// </summary>
    /// <param name="input">This rank's contribution; the same shape and dtype on every rank.</param>
    /// <param name="output">WorldSize × input's elements, the input's dtype; must not overlap the input.</param>
    void AllGather(Tensor input, Tensor output);

    /// <summary>Overwrites <paramref name="tensor"/> on every rank with rank <paramref name="root"/>'s.</summary>
    /// <param name="tensor">The same shape and dtype on every rank.</param>
    /// <param name="root">The rank whose tensor is sent, in <c>[0, WorldSize)</c>.</param>
    void Broadcast(Tensor tensor, int root);

    /// <summary>Returns once every rank has called it.</summary>
    void Barrier();

    /// <summary>
    /// Splits the group into sub-groups (MPI_Comm_split): ranks that pass the same <paramref name="color"/> form one,
    /// ranked within it by <paramref name="key"/>. Collective: every rank calls it. The caller owns the sub-group and
    /// disposes it before this communicator. A (data, model) mesh is made of two such splits (see <see cref="DeviceMesh"/>).
    /// </summary>
    /// <param name="color">The sub-group to join, non-negative.</param>
    /// <param name="key">This rank's order within it (ties keep the order of this group's ranks).</param>
    ICommunicator Split(int color, int key);

    /// <summary>
    /// Ends every rank of the job with <paramref name="exitCode"/> (MPI_Abort): for an error on one rank that
    /// would otherwise leave the others waiting in a collective. A single process just exits.
    /// </summary>
    void Abort(int exitCode);
}
