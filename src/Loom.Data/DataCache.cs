namespace Loom.Data;

/// <summary>Where Loom keeps data it fetched once (decoded corpora), per user.</summary>
public static class DataCache
{
    /// <summary>
    /// Resolves the cache root: <paramref name="cacheRoot"/> when given, else
    /// <c>$XDG_CACHE_HOME/loom</c> when that variable holds an absolute path, else <c>~/.cache/loom</c>.
    /// </summary>
    /// <param name="cacheRoot">An explicit root, or null for the per-user default.</param>
    /// <returns>The full path of the root; it need not exist yet.</returns>
    public static string ResolveRoot(string? cacheRoot)
    {
        if (!string.IsNullOrWhiteSpace(cacheRoot)) return Path.GetFullPath(cacheRoot);
        // The XDG spec says to ignore relative values of XDG_CACHE_HOME.
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "loom");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (string.IsNullOrEmpty(home))
            throw new InvalidOperationException("cannot find the home folder for the data cache; set XDG_CACHE_HOME or pass a cache folder");
        return Path.Combine(home, ".cache", "loom");
    }
}
