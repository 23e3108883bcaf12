using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Loom.Data.Sources;

/// <summary>Fingerprints of files on disk, for the fingerprints of the sources that read them.</summary>
public static class FileFingerprint
{
    /// <summary>
    /// A hash of the path, size and last write time of the file, or of every file under the folder
    /// (hidden entries skipped): editing, adding, removing or renaming a file changes it. A missing
    /// path gives a fingerprint of its own (so the source fails when read, not here).
    /// </summary>
    public static string Of(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        var text = new StringBuilder(full).Append('|');
        IEnumerable<string> files = File.Exists(full) ? [full]
            : Directory.Exists(full)
                ? Directory.EnumerateFiles(full, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System })
                    .Order(StringComparer.Ordinal)
                : [];
        foreach (string f in files)
        {
            var info = new FileInfo(f);
            text.Append(Path.GetRelativePath(full, f)).Append(':')
                .Append(info.Length.ToString(CultureInfo.InvariantCulture)).Append(':')
                .Append(info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture)).Append(';');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }
}
