namespace Loom.Testing;

/// <summary>The checkout the tests were built from, for tests that read its source or configs.</summary>
public static class RepositoryRoot
{
    /// <summary>The solution file that marks the repository root.</summary>
    public const string Marker = "Loom.slnx";

    /// <summary>
    /// The nearest folder above the test's base directory (<see cref="AppContext.BaseDirectory"/>) that
    /// holds <see cref="Marker"/>.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No folder above holds it (the tests run outside a checkout).</exception>
    public static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, Marker))) return dir.FullName;
        throw new DirectoryNotFoundException($"no {Marker} above {AppContext.BaseDirectory}: run the tests from a Loom checkout");
    }
}
