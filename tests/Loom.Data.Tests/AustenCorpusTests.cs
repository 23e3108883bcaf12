using Xunit.Abstractions;

namespace Loom.Data.Tests;

public class AustenCorpusTests(ITestOutputHelper output)
{
    /// <summary>Collects progress lines synchronously (Progress&lt;T&gt; would post them to the thread pool).</summary>
    private sealed class Lines : IProgress<string>
    {
        public List<string> All { get; } = [];
        public void Report(string value) { lock (All) All.Add(value); }
    }

    private sealed class Finally(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    [Fact]
    public void DecodesTheSixNovelsByName()
    {
        // Variables in the package's alphabetical order; the corpus wants publication order.
        string[] names = ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"];
        var (rdx, rdb) = RWriter.Database([.. names.Select(n => (n, RWriter.Serialize(w => w.Strings(n.ToUpperInvariant(), null, "text of " + n))))]);
        var documents = AustenCorpus.Decode(rdx, rdb);
        Assert.Equal(["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"], documents.Select(d => d.Name));
        Assert.Equal("PERSUASION\n\ntext of persuasion", documents[5].Text);
        Assert.Equal(CachedDocument.ValidationSplit, documents[5].Split);
        Assert.All(documents.Take(5), d => Assert.Equal(CachedDocument.TrainSplit, d.Split));
    }

    [Fact]
    public void DecodeNamesAMissingNovel()
    {
        var (rdx, rdb) = RWriter.Database(("emma", RWriter.Serialize(w => w.Strings("EMMA"))));
        var e = Assert.Throws<InvalidDataException>(() => AustenCorpus.Decode(rdx, rdb));
        Assert.Contains("sensesensibility", e.Message);
    }

    /// <summary>
    /// Fetches the real package into a fresh cache (needs the Debian mirror), then loads again from the
    /// cache. Where the mirror cannot be reached, checks the one-line refusal and reports the test skipped.
    /// </summary>
    [SkippableFact]
    public void LoadsTheRealNovelsThenReadsTheCache()
    {
        using var root = new TempDirectory();
        var fetchLines = new Lines();
        using var log = new Finally(() => fetchLines.All.ForEach(output.WriteLine));
        TextCorpus corpus;
        try
        {
            corpus = AustenCorpus.Load(root.Path, fetchLines);
        }
        catch (CorpusUnavailableException e)
        {
            output.WriteLine(e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains("Austen", e.Message);
            Assert.Contains("--data FILE_OR_DIR", e.Message);
            Assert.False(Directory.Exists(Path.Combine(root.Path, AustenCorpus.Name)));
            Requires.Missing($"the Austen corpus could not be fetched: {e.Message}");
            return;
        }

        Assert.Equal("austen", corpus.Name);
        Assert.Equal(5, corpus.Train.Count);
        Assert.Single(corpus.Validation);
        Assert.StartsWith("SENSE AND SENSIBILITY", corpus.Train[0]);
        Assert.StartsWith("PRIDE AND PREJUDICE", corpus.Train[1]);
        Assert.StartsWith("Persuasion", corpus.Validation[0]);
        Assert.Contains("It is a truth universally acknowledged, that a single man in possession", corpus.Train[1]);
        Assert.Contains("Sir Walter Elliot, of Kellynch Hall", corpus.Validation[0]);
        Assert.DoesNotContain(corpus.Train, d => d.Contains("Sir Walter Elliot, of Kellynch Hall", StringComparison.Ordinal));
        long trainChars = corpus.Train.Sum(d => (long)d.Length);
        Assert.InRange(trainChars, 3_500_000, 3_700_000);
        Assert.InRange(corpus.Validation[0].Length, 400_000, 500_000);
        Assert.Contains(fetchLines.All, l => l.Contains("apt-get download", StringComparison.Ordinal));
        Assert.Contains(fetchLines.All, l => l.Contains("cached 6 novels", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(root.Path, "austen", "manifest.json")));

        var cacheLines = new Lines();
        var again = AustenCorpus.Load(root.Path, cacheLines);
        Assert.Equal(corpus.Train, again.Train);
        Assert.Equal(corpus.Validation, again.Validation);
        Assert.DoesNotContain(cacheLines.All, l => l.Contains("apt-get", StringComparison.Ordinal));
        Assert.Contains(cacheLines.All, l => l.Contains("reading cache", StringComparison.Ordinal));
    }
}
