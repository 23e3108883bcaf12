using Xunit.Sdk;

namespace Loom.Testing;

/// <summary>
/// Waits on state rather than on the clock: polls a condition until it holds. The limit is only a
/// bound that turns a hang into a failure, never what a test's assertion rests on.
/// </summary>
public static class Eventually
{
    /// <summary>The default bound: generous, so a slow or busy machine never trips it.</summary>
    public static readonly TimeSpan DefaultLimit = TimeSpan.FromSeconds(120);

    /// <summary>Waits until <paramref name="condition"/> holds; fails, naming <paramref name="what"/>, past the limit.</summary>
    public static Task UntilAsync(Func<bool> condition, string what, TimeSpan? limit = null) =>
        UntilAsync(() => Task.FromResult(condition()), what, limit);

    /// <summary>Waits until <paramref name="condition"/> holds; fails, naming <paramref name="what"/>, past the limit.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? limit = null)
    {
        var bound = limit ?? DefaultLimit;
        var started = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition().ConfigureAwait(false))
        {
            if (started.Elapsed > bound) throw new XunitException($"gave up after {bound.TotalSeconds:F0} s waiting until {what}");
            await Task.Delay(10).ConfigureAwait(false);
        }
    }

    /// <summary>Waits for <paramref name="task"/>; fails, naming <paramref name="what"/>, past the limit.</summary>
    public static async Task For(Task task, string what, TimeSpan? limit = null)
    {
        var bound = limit ?? DefaultLimit;
        try
        {
            await task.WaitAsync(bound).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new XunitException($"gave up after {bound.TotalSeconds:F0} s waiting until {what}");
        }
    }
}
