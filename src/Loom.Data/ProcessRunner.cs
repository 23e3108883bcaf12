using System.ComponentModel;
using System.Diagnostics;

namespace Loom.Data;

/// <summary>Runs the Debian tools that fetch data, capturing their output without deadlocking on full pipes.</summary>
internal static class ProcessRunner
{
    /// <summary>The exit code and captured text of a finished command.</summary>
    internal sealed record Result(int ExitCode, string StandardOutput, string StandardError);

    /// <summary>Runs a command to completion.</summary>
    /// <exception cref="InvalidOperationException">The program could not be started (e.g. it is not on PATH).</exception>
    internal static Result Run(string program, IReadOnlyList<string> arguments, string workingDirectory)
    {
        using var process = Start(program, arguments, workingDirectory);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return new Result(process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }

    /// <summary>Runs a command and hands its binary standard output to <paramref name="consume"/> as a stream.</summary>
    /// <returns>The exit code and standard error (standard output is left empty).</returns>
    /// <exception cref="InvalidOperationException">The program could not be started.</exception>
    internal static Result RunReadingOutput(string program, IReadOnlyList<string> arguments, string workingDirectory, Action<Stream> consume)
    {
        using var process = Start(program, arguments, workingDirectory);
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            Stream output = process.StandardOutput.BaseStream;
            consume(output);
            output.CopyTo(Stream.Null); // drain the rest so the child never blocks on a full pipe
            process.WaitForExit();
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
        }
        return new Result(process.ExitCode, "", stderr.GetAwaiter().GetResult());
    }

    /// <summary>The last meaningful line of a command's error output, for a one-line message.</summary>
    internal static string LastLine(string text, string fallback)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // apt prints "E:" lines for errors and "W:" lines for warnings; an error explains more.
        return lines.LastOrDefault(l => l.StartsWith("E:", StringComparison.Ordinal)) ?? lines.LastOrDefault() ?? fallback;
    }

    private static Process Start(string program, IReadOnlyList<string> arguments, string workingDirectory)
    {
        var info = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true, // apt must never wait for an answer
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments) info.ArgumentList.Add(a);
        try
        {
            var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {program}");
            process.StandardInput.Close();
            return process;
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"{program} could not be run ({e.Message}); it ships with Debian and Ubuntu", e);
        }
    }
}
