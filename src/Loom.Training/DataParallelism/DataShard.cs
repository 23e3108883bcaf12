namespace Loom.Training.DataParallelism;

/// <summary>
/// Which part of every global batch this process trains on: rank <see cref="Rank"/> of
/// <see cref="WorldSize"/> data-parallel ranks.
/// </summary>
/// <remarks>
/// training.batch_size is the <b>global</b> batch: each rank draws batch_size / WorldSize rows per
/// micro-batch, and the batchers interleave the ranks (rank r's row b of step k is global sample
/// <c>(k · B/W + b) · W + r</c>), so the W ranks together see exactly the rows one process sees with the same
/// batch_size. Changing the number of ranks therefore changes neither the learning rate's meaning nor the
/// data: <c>mpirun -n 2 loom train</c> follows the one-process run.
/// </remarks>
public sealed record DataShard
{
    /// <summary>The one shard of a single process.</summary>
    public static DataShard Single { get; } = new(0, 1);

    /// <summary>Creates a shard.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The world size is not positive, or the rank is outside <c>[0, worldSize)</c>.</exception>
    public DataShard(int rank, int worldSize)
    {
        if (worldSize <= 0) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"the world size must be positive, got {worldSize}");
        if ((uint)rank >= (uint)worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {worldSize}), got {rank}");
        Rank = rank;
        WorldSize = worldSize;
    }

    /// <summary>This process's rank.</summary>
    public int Rank { get; }

    /// <summary>The number of data-parallel ranks.</summary>
    public int WorldSize { get; }

    /// <summary>Rows per micro-batch on this rank: the global <paramref name="globalBatchSize"/> split evenly.</summary>
    /// <exception cref="ArgumentException">The global batch does not split evenly over the ranks.</exception>
    public int RowsPerRank(int globalBatchSize)
    {
        if (globalBatchSize % WorldSize != 0)
            throw new ArgumentException($"training.batch_size = {globalBatchSize} is the global batch and must split evenly over the {WorldSize} ranks: use a multiple of {WorldSize}, or launch a number of ranks that divides it");
        return globalBatchSize / WorldSize;
    }
}
