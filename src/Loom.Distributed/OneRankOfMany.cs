using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>
/// What one rank of a group of <see cref="WorldSize"/> sees of itself, with no other rank behind it: for code that
/// only lays work out by (rank, world size), such as splitting a model. Any collective throws.
/// </summary>
public sealed class OneRankOfMany(int rank, int worldSize) : ICommunicator
{
    /// <inheritdoc />
    public int Rank { get; } = rank;

    /// <inheritdoc />
    public int WorldSize { get; } = worldSize;

    /// <inheritdoc />
    public string Backend => "none";

    /// <inheritdoc />
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => throw NoPeers();

    /// <inheritdoc />
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => throw NoPeers();

    /// <inheritdoc />
    public void AllGather(Tensor input, Tensor output) => throw NoPeers();

    /// <inheritdoc />
    public void Broadcast(Tensor tensor, int root) => throw NoPeers();

    /// <inheritdoc />
    public void Barrier() => throw NoPeers();

    /// <inheritdoc />
    public ICommunicator Split(int color, int key) => throw NoPeers();

    /// <inheritdoc />
    public void Abort(int exitCode) => throw NoPeers();

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static InvalidOperationException NoPeers() => new("this stand-in rank has no peers: the code under test must not call collectives");
}
