using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>Makes the communicator that suits how this process was launched.</summary>
public static class Communicators
{
    /// <summary>
    /// The job's communicator: under <c>mpirun -n N</c> or <c>srun</c> with N &gt; 1, MPI (MPICH) for a CPU
    /// <paramref name="device"/> or NCCL for a CUDA one; otherwise a <see cref="SingleProcessCommunicator"/>,
    /// and no MPI library is loaded.
    /// </summary>
    /// <param name="device">Where the tensors to reduce live; null for the CPU.</param>
    /// <param name="variable">Looks environment variables up; null for this process's environment (tests pass their own).</param>
    /// <exception cref="CommunicatorUnavailableException">The launcher asks for several processes but MPICH (or NCCL) is missing, or MPI disagrees with the launcher.</exception>
    /// <exception cref="ArgumentException">The launcher's variables are malformed.</exception>
    public static ICommunicator FromEnvironment(Device? device = null, Func<string, string?>? variable = null)
    {
        var launch = LaunchEnvironment.Read(variable ?? Environment.GetEnvironmentVariable);
        if (launch is null || !launch.IsDistributed) return new SingleProcessCommunicator();
        if (!Native.Mpi.IsAvailable())
            throw new CommunicatorUnavailableException(
                $"launched as rank {launch.Rank} of {launch.WorldSize} ({launch.SizeVariable}={launch.WorldSize}) but {Native.Mpi.Library} is missing: install mpich (apt-get install mpich)");
        var mpi = new MpiCommunicator();
        try
        {
            if (mpi.WorldSize != launch.WorldSize || mpi.Rank != launch.Rank)
                throw new CommunicatorUnavailableException(
                    $"the launcher ({launch.Launcher}) made this rank {launch.Rank} of {launch.WorldSize} but MPICH sees rank {mpi.Rank} of {mpi.WorldSize}: launch with MPICH's mpirun (Debian's mpich package), not another MPI's");
            return device is { type: DeviceType.CUDA } ? new NcclCommunicator(mpi, device) : mpi;
        }
        catch
        {
            mpi.Dispose();
            throw;
        }
    }
}
