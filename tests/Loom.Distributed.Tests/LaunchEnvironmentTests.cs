using Loom.Distributed;

namespace Loom.Distributed.Tests;

public sealed class LaunchEnvironmentTests
{
    private static Func<string, string?> Environment(params (string Name, string Value)[] variables)
    {
        var map = variables.ToDictionary(v => v.Name, v => v.Value, StringComparer.Ordinal);
        return name => map.GetValueOrDefault(name);
    }

    [Fact]
    public void APlainProcessHasNoLauncher() => Assert.Null(LaunchEnvironment.Read(Environment()));

    [Theory]
    [InlineData("PMI_RANK", "PMI_SIZE", "mpich")]
    [InlineData("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "openmpi")]
    [InlineData("SLURM_PROCID", "SLURM_NTASKS", "slurm")]
    public void ReadsEachLaunchersVariables(string rank, string size, string launcher)
    {
        var launch = LaunchEnvironment.Read(Environment((rank, "2"), (size, "4")));
        Assert.Equal(new LaunchEnvironment(launcher, 2, 4, rank, size), launch);
        Assert.True(launch!.IsDistributed);
    }

    [Fact]
    public void MpichComesFirstWhenSrunStartsMpichRanks()
    {
        // srun exports SLURM_* for the job step while MPICH's PMI gives the MPI rank: trust PMI.
        var launch = LaunchEnvironment.Read(Environment(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("PMI_RANK", "3"), ("PMI_SIZE", "4")));
        Assert.Equal(("mpich", 3, 4), (launch!.Launcher, launch.Rank, launch.WorldSize));
    }

    [Fact]
    public void ARankWithoutASizeIsNoLaunch() => Assert.Null(LaunchEnvironment.Read(Environment(("PMI_RANK", "0"))));

    [Theory]
    [InlineData("x", "2", "PMI_RANK=x")]
    [InlineData("0", "two", "PMI_SIZE=two")]
    [InlineData("2", "2", "PMI_RANK=2")]
    [InlineData("-1", "2", "PMI_RANK=-1")]
    [InlineData("0", "0", "PMI_SIZE=0")]
    public void MalformedVariablesAreOneLineErrorsNamingThem(string rank, string size, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => LaunchEnvironment.Read(Environment(("PMI_RANK", rank), ("PMI_SIZE", size))));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void FromEnvironmentIsSingleProcessWithoutALauncherOrWithOneRank()
    {
        using var plain = Communicators.FromEnvironment(variable: Environment());
        Assert.IsType<SingleProcessCommunicator>(plain);
        using var one = Communicators.FromEnvironment(variable: Environment(("PMI_RANK", "0"), ("PMI_SIZE", "1")));
        Assert.IsType<SingleProcessCommunicator>(one);
    }
}
