using Xunit;

namespace Loom.Testing;

/// <summary>
/// For tests that need something outside the repository (a program, a corpus from a mirror): when it is
/// missing the test reports itself skipped, with the reason, instead of passing without doing its work.
/// Use with <c>[SkippableFact]</c> or <c>[SkippableTheory]</c>. Where <c>LOOM_TESTS_REQUIRE_ALL=1</c> (CI sets
/// it) a missing requirement fails the test instead, so CI cannot go green on skipped work.
/// </summary>
public static class Requires
{
    /// <summary>The environment variable that turns skips into failures.</summary>
    public const string RequireAllVariable = "LOOM_TESTS_REQUIRE_ALL";

    private static bool RequireAll => Environment.GetEnvironmentVariable(RequireAllVariable) == "1";

    /// <summary>Skips (or, under <see cref="RequireAllVariable"/>, fails) the test unless <paramref name="condition"/> holds.</summary>
    public static void That(bool condition, string reason)
    {
        if (condition) return;
        Missing(reason);
    }

    /// <summary>Skips (or, under <see cref="RequireAllVariable"/>, fails) the test: it cannot do its work.</summary>
    public static void Missing(string reason)
    {
        if (RequireAll) Assert.Fail($"{reason} ({RequireAllVariable}=1, so this is a failure rather than a skip)");
        throw new SkipException(reason);
    }

    /// <summary>True when <paramref name="program"/> is an existing file in a folder on PATH.</summary>
    public static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));
}
