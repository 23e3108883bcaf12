using System.Formats.Tar;

namespace Loom.Data;

/// <summary>
/// Fetches files out of Debian packages without root and without installing anything, using the
/// system's <c>apt-get</c> and <c>dpkg-deb</c>.
/// </summary>
public static class DebianPackages
{
    /// <summary>
    /// Downloads a package's <c>.deb</c> into <paramref name="directory"/>. Tries the system's apt lists
    /// first; where they lack the package (a fresh container has none, and only root may update them),
    /// updates a private copy of the lists inside <paramref name="directory"/> from the system's
    /// sources and downloads with those.
    /// </summary>
    /// <param name="packageName">The Debian package name, e.g. <c>r-cran-janeaustenr</c>.</param>
    /// <param name="directory">An existing, writable folder that receives the <c>.deb</c> and the private lists.</param>
    /// <param name="progress">Receives one line per step, or null.</param>
    /// <returns>The path of the downloaded <c>.deb</c>.</returns>
    /// <exception cref="InvalidOperationException">apt-get is missing or could not download the package; the message holds apt's error.</exception>
    public static string Download(string packageName, string directory, IProgress<string>? progress = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(packageName);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        progress?.Report($"apt-get download {packageName}");
        var first = ProcessRunner.Run("apt-get", ["download", packageName], directory);
        if (first.ExitCode == 0 && FindDeb(directory, packageName) is { } deb) return deb;

        string apt = Path.Combine(directory, "apt");
        string lists = Path.Combine(apt, "lists");
        string cache = Path.Combine(apt, "cache");
        Directory.CreateDirectory(Path.Combine(lists, "partial"));
        Directory.CreateDirectory(Path.Combine(cache, "archives", "partial"));
        // Private lists and package cache, and no lock on the system's lists: this is what lets a
        // non-root user run "apt-get update" (checked as root and as nobody on Debian 12).
        string[] options =
        [
            "-o", $"Dir::State::Lists={lists}",
            "-o", $"Dir::Cache={cache}",
            "-o", "Debug::NoLocking=1",
        ];
        progress?.Report($"the system's apt lists lack {packageName} ({ProcessRunner.LastLine(first.StandardError, "no .deb")}); updating private lists in {lists}");
        var update = ProcessRunner.Run("apt-get", [.. options, "update"], directory);
        progress?.Report($"apt-get download {packageName} (private lists)");
        var second = ProcessRunner.Run("apt-get", [.. options, "download", packageName], directory);
        if (second.ExitCode == 0 && FindDeb(directory, packageName) is { } deb2) return deb2;

        string why = update.ExitCode != 0
            ? $"apt-get update failed: {ProcessRunner.LastLine(update.StandardError, $"exit code {update.ExitCode}")}"
            : $"apt-get download {packageName} failed: {ProcessRunner.LastLine(second.StandardError, $"exit code {second.ExitCode}")}";
        throw new InvalidOperationException(why);
    }

    /// <summary>Reads the named files out of a <c>.deb</c>'s file system tree.</summary>
    /// <param name="debPath">The package file.</param>
    /// <param name="paths">Paths inside the package without a leading slash, e.g. <c>usr/lib/R/site-library/janeaustenr/data/Rdata.rdb</c>.</param>
    /// <returns>Each requested path's bytes.</returns>
    /// <exception cref="InvalidOperationException">dpkg-deb is missing or failed.</exception>
    /// <exception cref="InvalidDataException">The package lacks one of the paths.</exception>
    public static IReadOnlyDictionary<string, byte[]> ReadFiles(string debPath, IReadOnlyCollection<string> paths)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(debPath);
        ArgumentNullException.ThrowIfNull(paths);
        var wanted = new HashSet<string>(paths, StringComparer.Ordinal);
        var found = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        string full = Path.GetFullPath(debPath);
        // dpkg-deb unpacks data.tar.{xz,zst,gz} itself, so only a plain tar reaches .NET.
        var result = ProcessRunner.RunReadingOutput("dpkg-deb", ["--fsys-tarfile", full], Path.GetDirectoryName(full)!, output =>
        {
            using var tar = new TarReader(output, leaveOpen: true);
            while (found.Count < wanted.Count && tar.GetNextEntry() is { } entry)
            {
                string name = entry.Name.StartsWith("./", StringComparison.Ordinal) ? entry.Name[2..] : entry.Name.TrimStart('/');
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || !wanted.Contains(name) || entry.DataStream is null)
                    continue;
                using var buffer = new MemoryStream();
                entry.DataStream.CopyTo(buffer);
                found[name] = buffer.ToArray();
            }
        });
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"dpkg-deb --fsys-tarfile {Path.GetFileName(full)} failed: {ProcessRunner.LastLine(result.StandardError, $"exit code {result.ExitCode}")}");
        foreach (string path in wanted)
            if (!found.ContainsKey(path))
                throw new InvalidDataException($"{Path.GetFileName(full)} lacks {path}");
        return found;
    }

    private static string? FindDeb(string directory, string packageName) =>
        Directory.EnumerateFiles(directory, packageName + "_*.deb").Order(StringComparer.Ordinal).FirstOrDefault();
}
