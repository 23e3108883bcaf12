using System.Diagnostics;

namespace Loom.Testing;

/// <summary>
/// Starts a program on several ranks with MPICH's <c>mpirun -n N</c> and waits for the whole job to exit.
/// Tests that use it call <see cref="RequireMpirun"/> first (a <c>[SkippableFact]</c>), so a machine without
/// MPICH skips them, or fails them under <c>LOOM_TESTS_REQUIRE_ALL=1</c>.
/// </summary>
public static class MpiRun
{
    /// <summary>How long a job may run before it is killed: a bound that turns a hang into a failure, never a measure.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(15);

    /// <summary>What the job printed and how it ended.</summary>
    /// <param name="ExitCode">mpirun's exit code: 0 when every rank exited 0.</param>
    /// <param name="Stdout">All ranks' standard output, interleaved by line.</param>
    /// <param name="Stderr">All ranks' standard error.</param>
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        /// <summary>Both streams, for assertion messages.</summary>
        public override string ToString() => $"exit code {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    /// <summary>Skips (or fails under LOOM_TESTS_REQUIRE_ALL=1) the test when MPICH's mpirun is not installed.</summary>
    public static void RequireMpirun() =>
        Requires.That(Requires.OnPath("mpirun"), "mpirun not found: install mpich (apt-get install mpich)");

    /// <summary>
    /// Runs <c>mpirun -n <paramref name="ranks"/> dotnet <paramref name="assembly"/> args…</c> in
    /// <paramref name="workingDirectory"/>, each rank limited to one libtorch/OpenMP thread so that several
    /// ranks share a small machine fairly.
    /// </summary>
    public static Result Dotnet(int ranks, string workingDirectory, string assembly, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null) =>
        Run(workingDirectory, ["-n", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "dotnet", assembly, .. args], environment);

    /// <summary>
    /// Runs <c>mpirun <paramref name="arguments"/></c> (for example an MPMD job, <c>-n 1 A : -n 1 B</c>) and waits
    /// for every rank to exit; each rank gets one libtorch/OpenMP thread.
    /// </summary>
    public static Result Run(string workingDirectory, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("mpirun")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.Environment["MKL_NUM_THREADS"] = "1";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("mpirun did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpirun {string.Join(' ', arguments)} did not finish within {Limit.TotalMinutes:F0} minutes");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
