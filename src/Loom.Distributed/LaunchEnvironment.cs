using System.Globalization;

namespace Loom.Distributed;

/// <summary>
/// The rank and world size that a launcher gave this process through its environment: MPICH's hydra
/// (<c>mpirun</c>/<c>mpiexec</c>: PMI_RANK, PMI_SIZE), Open MPI (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE)
/// or Slurm (<c>srun</c>: SLURM_PROCID, SLURM_NTASKS), read in that order.
/// </summary>
/// <param name="Launcher">Which launcher set the variables: "mpich", "openmpi" or "slurm".</param>
/// <param name="Rank">This process's rank, in <c>[0, WorldSize)</c>.</param>
/// <param name="WorldSize">The number of processes, positive.</param>
/// <param name="RankVariable">The variable the rank came from (for messages).</param>
/// <param name="SizeVariable">The variable the world size came from (for messages).</param>
public sealed record LaunchEnvironment(string Launcher, int Rank, int WorldSize, string RankVariable, string SizeVariable)
{
    private static readonly (string Launcher, string Rank, string Size)[] Known =
    [
        ("mpich", "PMI_RANK", "PMI_SIZE"),
        ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("slurm", "SLURM_PROCID", "SLURM_NTASKS"),
    ];

    /// <summary>True when the job has more than one process.</summary>
    public bool IsDistributed => WorldSize > 1;

    /// <summary>The process's own environment.</summary>
    public static LaunchEnvironment? Current() => Read(Environment.GetEnvironmentVariable);

    /// <summary>
    /// The first launcher whose rank and size variables are both set; null when none is (a plain process).
    /// </summary>
    /// <param name="variable">Looks a variable up; null when it is not set.</param>
    /// <exception cref="ArgumentException">A variable is not a number, or the rank is outside <c>[0, size)</c>.</exception>
    public static LaunchEnvironment? Read(Func<string, string?> variable)
    {
        ArgumentNullException.ThrowIfNull(variable);
        foreach (var (launcher, rankName, sizeName) in Known)
        {
            string? rankText = variable(rankName), sizeText = variable(sizeName);
            if (string.IsNullOrWhiteSpace(rankText) || string.IsNullOrWhiteSpace(sizeText)) continue;
            int size = Parse(sizeName, sizeText);
            int rank = Parse(rankName, rankText);
            if (size <= 0)
                throw new ArgumentException($"{sizeName}={sizeText} must be a positive number of processes: launch with mpirun -n N (N >= 1)");
            if (rank < 0 || rank >= size)
                throw new ArgumentException($"{rankName}={rankText} is outside [0, {sizeName}={size}): the launcher's environment is inconsistent; launch with mpirun -n N");
            return new LaunchEnvironment(launcher, rank, size, rankName, sizeName);
        }
        return null;
    }

    private static int Parse(string name, string text) =>
        int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw new ArgumentException($"{name}={text} is not a whole number: unset it, or launch with mpirun -n N which sets it");
}
