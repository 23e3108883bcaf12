using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Loom.Bench;

/// <summary>What a result line needs to be reproducible: CPU, threads, OS, runtime, load, commit.</summary>
internal static class MachineInfo
{
    /// <summary>The CPU's model name from /proc/cpuinfo, or the architecture where there is none.</summary>
    public static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null && line.Contains(':', StringComparison.Ordinal)) return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    /// <summary>PRETTY_NAME from /etc/os-release, else the runtime's description.</summary>
    public static string OperatingSystem()
    {
        try
        {
            var line = File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal));
            if (line is not null) return line["PRETTY_NAME=".Length..].Trim('"');
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return RuntimeInformation.OSDescription;
    }

    /// <summary>The 1-minute load average, or null off Linux. Above the core count means the CPU was shared.</summary>
    public static double? LoadAverage()
    {
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(first, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>TorchSharp's assembly version (the libtorch it binds comes with it).</summary>
    public static string TorchSharpVersion() =>
        typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "unknown";

    /// <summary><c>git rev-parse --short HEAD</c> of the working directory, marked when tracked files differ from it.</summary>
    public static string GitCommit()
    {
        string? head = Git("rev-parse --short HEAD");
        if (head is null) return "unknown (not a git checkout)";
        string? changes = Git("status --porcelain --untracked-files=no");
        return string.IsNullOrEmpty(changes) ? head : head + " + uncommitted changes";
    }

    private static string? Git(string arguments)
    {
        try
        {
            var start = new ProcessStartInfo("git", arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var process = Process.Start(start);
            if (process is null) return null;
            string output = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit(5000);
            return process.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // git is not installed
        }
    }
}
