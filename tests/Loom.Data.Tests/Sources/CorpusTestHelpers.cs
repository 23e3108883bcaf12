namespace Loom.Data.Tests.Sources;

/// <summary>Collects progress lines synchronously (Progress&lt;T&gt; would post them to the thread pool).</summary>
internal sealed class ProgressLines : IProgress<string>
{
    public List<string> All { get; } = [];

    public void Report(string value) { lock (All) All.Add(value); }
}
