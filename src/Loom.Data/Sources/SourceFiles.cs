namespace Loom.Data.Sources;

/// <summary>Resolves a source path (one file or a folder) into its data files in a reproducible order.</summary>
internal static class SourceFiles
{
    /// <summary>
    /// The file itself, or every file under the folder (recursively, hidden entries skipped) whose name
    /// ends in one of <paramref name="extensions"/>, in ordinal order of their paths.
    /// </summary>
    /// <exception cref="FileNotFoundException">The path does not exist, or the folder holds no such file.</exception>
    internal static IReadOnlyList<string> Resolve(string path, string kind, IReadOnlyList<string> extensions)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full)) return [full];
        if (!Directory.Exists(full))
            throw new FileNotFoundException($"{full}: does not exist; pass an existing {kind} file or a folder of them", full);
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System };
        string[] files = [.. Directory.EnumerateFiles(full, "*", options)
            .Where(f => extensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
            .Order(StringComparer.Ordinal)];
        if (files.Length == 0)
            throw new FileNotFoundException($"{full}: folder holds no {string.Join(" or ", extensions)} files; pass a {kind} file or a folder that holds some", full);
        return files;
    }

    /// <summary>
    /// Checks a selection of field names and an optional rename map, returning the output name of each
    /// selected field in order.
    /// </summary>
    /// <exception cref="ArgumentException">A name is empty or repeated, or the rename map names an unselected field.</exception>
    internal static IReadOnlyList<string> OutputNames(IReadOnlyList<string> fields, IReadOnlyDictionary<string, string>? rename, string what)
    {
        if (fields.Count == 0) throw new ArgumentException($"select at least one {what}, e.g. [\"text\"]");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string f in fields)
        {
            if (string.IsNullOrEmpty(f)) throw new ArgumentException($"{what} names must not be empty");
            if (!seen.Add(f)) throw new ArgumentException($"{what} '{f}' is selected twice; list each once");
        }
        if (rename is not null)
            foreach (var (from, to) in rename)
            {
                if (!seen.Contains(from)) throw new ArgumentException($"rename maps '{from}', which is not a selected {what}; select it or drop the mapping");
                if (string.IsNullOrEmpty(to)) throw new ArgumentException($"rename maps '{from}' to an empty name; give it a name");
            }
        string[] outputs = [.. fields.Select(f => rename is not null && rename.TryGetValue(f, out string? to) ? to : f)];
        var outSeen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string o in outputs)
            if (!outSeen.Add(o)) throw new ArgumentException($"two selected {what}s are both named '{o}' after renaming; rename one of them");
        return outputs;
    }
}
