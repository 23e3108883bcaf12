using Loom.Distributed;
using static TorchSharp.torch;

namespace Loom.Distributed.Tests;

public sealed class SingleProcessCommunicatorTests
{
    private readonly SingleProcessCommunicator communicator = new();

    [Fact]
    public void IsRankZeroOfOne()
    {
        Assert.Equal(0, communicator.Rank);
        Assert.Equal(1, communicator.WorldSize);
        Assert.Equal("single", communicator.Backend);
    }

    [Fact]
    public void AllReduceAndBroadcastLeaveTheTensor()
    {
        using var t = tensor(new[] { 1f, 2f, 3f });
        communicator.AllReduce(t);
        communicator.AllReduce(t, ReduceOp.Max);
        communicator.AllReduceAverage(t);
        communicator.Broadcast(t, root: 0);
        communicator.Barrier();
        Assert.Equal(new[] { 1f, 2f, 3f }, t.data<float>().ToArray());
    }

    [Fact]
    public void ReduceScatterAndAllGatherCopy()
    {
        using var input = arange(6, float32).reshape(2, 3); // (2, 3)
        using var scattered = zeros(6, float32);
        communicator.ReduceScatter(input, scattered);
        Assert.Equal(new[] { 0f, 1f, 2f, 3f, 4f, 5f }, scattered.data<float>().ToArray());
        using var gathered = zeros(new long[] { 1, 6 }, float32);
        communicator.AllGather(scattered, gathered);
        Assert.Equal(new[] { 0f, 1f, 2f, 3f, 4f, 5f }, gathered.data<float>().ToArray());
        Assert.Equal(new[] { 42L }, communicator.AllGather(42L));
        Assert.True(communicator.Any(true));
        Assert.False(communicator.Any(false));
    }

    [Fact]
    public void WrongShapesAndRootsSayWhatIsWrong()
    {
        using var input = zeros(4);
        using var output = zeros(3);
        Assert.Contains("world size 1", Assert.Throws<ArgumentException>(() => communicator.ReduceScatter(input, output)).Message);
        Assert.Contains("world size 1", Assert.Throws<ArgumentException>(() => communicator.AllGather(input, output)).Message);
        using var ints = zeros(3, int64);
        Assert.Contains("same dtype", Assert.Throws<ArgumentException>(() => communicator.AllGather(ints, output)).Message);
        Assert.Contains("root 1", Assert.Throws<ArgumentOutOfRangeException>(() => communicator.Broadcast(input, root: 1)).Message);
        Assert.Contains("floating-point", Assert.Throws<ArgumentException>(() => communicator.AllReduceAverage(ints)).Message);
    }
}
