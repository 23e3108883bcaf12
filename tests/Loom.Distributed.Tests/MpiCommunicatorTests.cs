namespace Loom.Distributed.Tests;

/// <summary>Collectives across real processes: the test host checks every result against closed forms in (rank, world size).</summary>
public sealed class MpiCommunicatorTests
{
    private static string Host => Path.Combine(AppContext.BaseDirectory, "Loom.Distributed.TestHost.dll");

    [SkippableTheory]
    [InlineData(2)]
    [InlineData(4)] // more ranks than this 2-core machine has cores: MPICH's hydra oversubscribes without asking
    public void CollectivesGiveExactResultsOnEveryRank(int ranks)
    {
        MpiRun.RequireMpirun();
        var run = MpiRun.Dotnet(ranks, AppContext.BaseDirectory, Host, ["collectives"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        for (int rank = 0; rank < ranks; rank++)
            Assert.Contains(lines, l => l.StartsWith($"OK rank {rank} of {ranks} (mpi):", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void TensorParallelServingGivesTheTokensOfOneProcessForTwentyConcurrentRequests()
    {
        MpiRun.RequireMpirun();
        var run = MpiRun.Dotnet(2, AppContext.BaseDirectory, Host, ["tp-engine"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("OK rank 0 of 2: 20 requests", run.Stdout);
        Assert.Contains("OK rank 1 of 2: served the model group", run.Stdout);
    }

    [Fact]
    public async Task WithoutALauncherTheHostRunsAsOneProcess()
    {
        var start = new System.Diagnostics.ProcessStartInfo("dotnet", [Host, "collectives"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var name in new[] { "PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS" })
            start.Environment.Remove(name);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        string output = await stdout, errors = await stderr;
        Assert.True(process.ExitCode == 0, output + errors);
        Assert.StartsWith("OK rank 0 of 1 (single):", output.Trim());
    }

    [SkippableFact]
    public void ACudaDeviceWithoutNcclIsAOneLineErrorSayingWhatToInstall()
    {
        MpiRun.RequireMpirun();
        Requires.That(!System.Runtime.InteropServices.NativeLibrary.TryLoad("libnccl.so.2", out _), "libnccl.so.2 is installed here: this test checks the error when it is missing");
        var run = MpiRun.Dotnet(2, AppContext.BaseDirectory, Host, ["nccl-missing"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        var errors = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("ERROR ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, errors.Count);
        Assert.All(errors, e => Assert.Contains("libnccl.so.2 not found: install NCCL", e));
    }
}
