using Loom.Data.Sources;
using Xunit.Abstractions;

namespace Loom.Data.Tests.Sources;

public class KjvAndMobyDickTests(ITestOutputHelper output)
{
    [Fact]
    public void KjvParseGroupsVersesIntoBooksAndSplits()
    {
        string dump = string.Join('\n', KjvCorpus.Books.Select(b => $"{b}1:1 First of {b}.\n{b}1:2 Second of {b}.")) + "\n";
        var documents = KjvCorpus.Parse(dump);
        Assert.Equal(66, documents.Count);
        Assert.Equal("01-Ge", documents[0].Name);
        Assert.Equal("1:1 First of Ge.\n1:2 Second of Ge.", documents[0].Text);
        Assert.Equal(["37-Hag", "38-Zec", "39-Mal"], documents.Where(d => d.Split == "test").Select(d => d.Name));
        Assert.Equal(["64-3Jn", "65-Jude", "66-Rev"], documents.Where(d => d.Split == "validation").Select(d => d.Name));
        Assert.Equal(60, documents.Count(d => d.Split == "train"));
    }

    [Fact]
    public void KjvParseRefusesUnknownLinesAndMissingBooks()
    {
        Assert.Contains("line 2", Assert.Throws<InvalidDataException>(() => KjvCorpus.Parse("Ge1:1 In the beginning\n(No concordance file)\n")).Message);
        Assert.Contains("no verses of Exo", Assert.Throws<InvalidDataException>(() => KjvCorpus.Parse("Ge1:1 In the beginning\n")).Message);
    }

    [Fact]
    public void MobyDickSplitsChaptersAndDropsGutenbergMatter()
    {
        var lines = new List<string> { "\uFEFFThe Project Gutenberg EBook", "ETYMOLOGY.", "" };
        for (int i = 1; i <= 19; i++) lines.AddRange([$"CHAPTER {i}. Title {i}.", "", $"Text of {i}.", ""]);
        lines.AddRange(["Epilogue", "", "The drama's done.", "", "End of Project Gutenberg's Moby Dick", "licence"]);
        var documents = MobyDickCorpus.SplitChapters(string.Join("\r\n", lines));
        Assert.Equal(20, documents.Count);
        Assert.Equal("CHAPTER 1. Title 1.\n\nText of 1.", documents[0].Text);
        Assert.Equal("chapter-019", documents[18].Name);
        Assert.Equal(("epilogue", "Epilogue\n\nThe drama's done."), (documents[19].Name, documents[19].Text));
        Assert.Equal(2, documents.Count(d => d.Split == "validation"));
        Assert.Equal("validation", documents[18].Split);
    }

    [SkippableFact]
    public void LoadsTheRealKjvThenReadsTheCache()
    {
        using var root = new TempDirectory();
        var lines = new ProgressLines();
        TextCorpus corpus;
        try
        {
            corpus = KjvCorpus.Load(root.Path, lines);
        }
        catch (CorpusUnavailableException e)
        {
            AssertRefusal(e, "King James Bible");
            Requires.Missing($"King James Bible could not be fetched: {e.Message}");
            return;
        }
        finally
        {
            lines.All.ForEach(output.WriteLine);
        }
        Assert.Equal("kjv", corpus.Name);
        Assert.Equal(60, corpus.Train.Count);
        Assert.Equal(3, corpus.Validation.Count);
        Assert.StartsWith("1:1 In the beginning God created the heaven and the earth.\n", corpus.Train[0]);
        Assert.EndsWith("22:21 The grace of our Lord Jesus Christ be with you all. Amen.", corpus.Validation[2]);
        var test = KjvCorpus.LoadTest(root.Path);
        Assert.Equal(3, test.Count);
        Assert.StartsWith("1:1 In the second year of Darius the king", test[0]);
        int verses = corpus.Train.Concat(corpus.Validation).Concat(test).Sum(d => d.Count(c => c == '\n') + 1);
        Assert.Equal(31_102, verses);
        long chars = corpus.Train.Concat(corpus.Validation).Concat(test).Sum(d => (long)d.Length);
        Assert.InRange(chars, 4_200_000, 4_400_000);
        Assert.Contains(lines.All, l => l.Contains("apt-get download bible-kjv-text", StringComparison.Ordinal));
        Assert.Contains(lines.All, l => l.Contains("cached 66 books", StringComparison.Ordinal));

        var cacheLines = new ProgressLines();
        var again = KjvCorpus.Load(root.Path, cacheLines);
        Assert.Equal(corpus.Train, again.Train);
        Assert.Equal(corpus.Validation, again.Validation);
        Assert.Equal(["kjv: reading cache " + Path.Combine(root.Path, "kjv")], cacheLines.All);
    }

    [SkippableFact]
    public void LoadsTheRealMobyDickThenReadsTheCache()
    {
        using var root = new TempDirectory();
        var lines = new ProgressLines();
        TextCorpus corpus;
        try
        {
            corpus = MobyDickCorpus.Load(root.Path, lines);
        }
        catch (CorpusUnavailableException e)
        {
            AssertRefusal(e, "Moby-Dick");
            Requires.Missing($"Moby-Dick could not be fetched: {e.Message}");
            return;
        }
        finally
        {
            lines.All.ForEach(output.WriteLine);
        }
        Assert.Equal("moby_dick", corpus.Name);
        Assert.Equal(122, corpus.Train.Count);
        Assert.Equal(14, corpus.Validation.Count);
        Assert.StartsWith("CHAPTER 1. Loomings.\n\n\nCall me Ishmael.", corpus.Train[0]);
        Assert.StartsWith("CHAPTER 123.", corpus.Validation[0]);
        Assert.StartsWith("Epilogue", corpus.Validation[^1]);
        Assert.DoesNotContain("Gutenberg", corpus.Validation[^1]);
        long chars = corpus.Train.Concat(corpus.Validation).Sum(d => (long)d.Length);
        Assert.InRange(chars, 1_150_000, 1_220_000);
        Assert.Contains(lines.All, l => l.Contains("cached 136 chapters", StringComparison.Ordinal));

        var cacheLines = new ProgressLines();
        var again = MobyDickCorpus.Load(root.Path, cacheLines);
        Assert.Equal(corpus.Train, again.Train);
        Assert.Equal(corpus.Validation, again.Validation);
        Assert.Single(cacheLines.All, l => l.Contains("reading cache", StringComparison.Ordinal));
    }

    private void AssertRefusal(CorpusUnavailableException e, string what)
    {
        output.WriteLine(e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains("--data FILE_OR_DIR", e.Message);
    }
}
