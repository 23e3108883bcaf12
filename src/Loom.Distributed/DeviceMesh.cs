using System.Globalization;

namespace Loom.Distributed;

/// <summary>
/// The ranks of a job laid out as a (data, model) mesh, as t5x's partitioner lays out devices: rank
/// <c>d · Model + m</c> sits at data index d and model index m, so the ranks of one model group are
/// neighbours (on one machine when the launcher fills machines in rank order, where the model axis's frequent
/// all-reduces are cheapest). <see cref="ModelGroup"/> holds the ranks that split one model's layers between
/// them and see the same batch; <see cref="DataGroup"/> the ranks that hold the same shards and average
/// their gradients.
/// </summary>
public sealed class DeviceMesh : IDisposable
{
    private readonly bool ownsDataGroup;
    private readonly bool ownsModelGroup;

    private DeviceMesh(ICommunicator world, int data, int model, ICommunicator dataGroup, bool ownsDataGroup, ICommunicator modelGroup, bool ownsModelGroup)
    {
        World = world;
        Data = data;
        Model = model;
        DataGroup = dataGroup;
        ModelGroup = modelGroup;
        this.ownsDataGroup = ownsDataGroup;
        this.ownsModelGroup = ownsModelGroup;
    }

    /// <summary>
    /// Lays the ranks of <paramref name="world"/> out as a <paramref name="data"/> × <paramref name="model"/> mesh
    /// (collective: every rank calls it). A data axis of 0 takes whatever the model axis leaves.
    /// </summary>
    /// <param name="world">Every rank of the job; not owned.</param>
    /// <param name="data">The data-parallel axis (<c>parallelism.data</c>), or 0 for world size / model.</param>
    /// <param name="model">The model-parallel axis (<c>parallelism.model</c>), positive.</param>
    /// <exception cref="ArgumentException">The mesh does not cover the world exactly; the message says how to fix it.</exception>
    public static DeviceMesh Create(ICommunicator world, int data, int model)
    {
        ArgumentNullException.ThrowIfNull(world);
        (data, model) = Shape(world.WorldSize, data, model);
        if (model == 1) return new DeviceMesh(world, data, model, world, false, new SingleProcessCommunicator(), true);
        if (data == 1) return new DeviceMesh(world, data, model, new SingleProcessCommunicator(), true, world, false);
        int dataIndex = world.Rank / model, modelIndex = world.Rank % model;
        var modelGroup = world.Split(color: dataIndex, key: modelIndex);
        var dataGroup = world.Split(color: modelIndex, key: dataIndex);
        return new DeviceMesh(world, data, model, dataGroup, true, modelGroup, true);
    }

    /// <summary>
    /// The (data, model) axes of a mesh over <paramref name="ranks"/> ranks, a data axis of 0 resolved to what the model
    /// axis leaves; checks that the mesh covers the ranks exactly (what <see cref="Create"/> lays out).
    /// </summary>
    /// <exception cref="ArgumentException">The mesh does not cover the ranks exactly; the message says how to fix it.</exception>
    public static (int Data, int Model) Shape(int ranks, int data, int model)
    {
        if (model <= 0) throw new ArgumentException($"parallelism.model = {model} must be positive");
        if (data < 0) throw new ArgumentException($"parallelism.data = {data} must be positive (or 0: the ranks the model axis leaves)");
        if (data == 0)
        {
            if (ranks % model != 0)
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                    $"parallelism.model = {model} does not divide the {ranks} ranks of the job: start a multiple of {model} ranks (mpirun -n N), or choose a model axis that divides {ranks}"));
            data = ranks / model;
        }
        if ((long)data * model != ranks)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"the mesh parallelism.data = {data} × parallelism.model = {model} = {(long)data * model} ranks does not match the {ranks} ranks of the job: start {(long)data * model} ranks (mpirun -n {(long)data * model}), or set parallelism.data = 0 to fill the job"));
        return (data, model);
    }

    /// <summary>Every rank of the job (not owned).</summary>
    public ICommunicator World { get; }

    /// <summary>The data-parallel axis: how many model replicas there are.</summary>
    public int Data { get; }

    /// <summary>The model-parallel axis: how many ranks share one replica's layers.</summary>
    public int Model { get; }

    /// <summary>The ranks at this rank's model index: they train on different rows and average their gradients.</summary>
    public ICommunicator DataGroup { get; }

    /// <summary>The ranks at this rank's data index: they hold one replica's shards and see the same rows.</summary>
    public ICommunicator ModelGroup { get; }

    /// <summary>This rank's place on the data axis.</summary>
    public int DataIndex => World.Rank / Model;

    /// <summary>This rank's place on the model axis.</summary>
    public int ModelIndex => World.Rank % Model;

    /// <summary>"2 × 2 (data × model)", for logs.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Data} × {Model} (data × model)");

    /// <summary>Frees the groups this mesh split off (the world stays with its owner).</summary>
    public void Dispose()
    {
        if (ownsDataGroup) DataGroup.Dispose();
        if (ownsModelGroup) ModelGroup.Dispose();
    }
}
