namespace Loom.Distributed.Tests;

/// <summary>The (data, model) mesh's shape rules; the groups themselves are checked across processes by the test host.</summary>
public sealed class DeviceMeshTests
{
    [Theory]
    [InlineData(4, 0, 2, 2, 2)]
    [InlineData(4, 2, 2, 2, 2)]
    [InlineData(8, 0, 1, 8, 1)]
    [InlineData(2, 1, 2, 1, 2)]
    public void AMeshCoversTheRanksExactly(int ranks, int data, int model, int expectedData, int expectedModel) =>
        Assert.Equal((expectedData, expectedModel), DeviceMesh.Shape(ranks, data, model));

    [Theory]
    [InlineData(4, 0, 3, "parallelism.model = 3 does not divide the 4 ranks of the job")]
    [InlineData(4, 3, 2, "the mesh parallelism.data = 3 × parallelism.model = 2 = 6 ranks does not match the 4 ranks of the job: start 6 ranks (mpirun -n 6)")]
    [InlineData(2, 0, 0, "parallelism.model = 0 must be positive")]
    public void AMeshThatDoesNotDivideTheWorldIsAnErrorSayingHowToFixIt(int ranks, int data, int model, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => DeviceMesh.Shape(ranks, data, model)).Message);

    [Fact]
    public void OneProcessIsAOneByOneMeshWithoutGroupsToSplit()
    {
        using var world = new SingleProcessCommunicator();
        using var mesh = DeviceMesh.Create(world, 0, 1);
        Assert.Equal((1, 1, 0, 0), (mesh.Data, mesh.Model, mesh.DataIndex, mesh.ModelIndex));
        Assert.Same(world, mesh.DataGroup);
        Assert.Equal(1, mesh.ModelGroup.WorldSize);
        Assert.Throws<ArgumentException>(() => DeviceMesh.Create(world, 0, 2));
    }
}
