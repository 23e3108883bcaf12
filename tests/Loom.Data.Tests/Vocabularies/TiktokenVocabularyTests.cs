using System.Text;

namespace Loom.Data.Tests;

public class TiktokenVocabularyTests
{
    [Theory]
    // Published ids: tiktoken.get_encoding(name).encode("hello world").
    [InlineData("gpt2", new[] { 31373, 995 })]
    [InlineData("cl100k_base", new[] { 15339, 1917 })]
    [InlineData("o200k_base", new[] { 24912, 2375 })]
    public void HelloWorldGivesThePublishedIds(string encoding, int[] expected) =>
        Assert.Equal(expected, new TiktokenVocabulary(encoding).Encode("hello world"));

    [Theory]
    [InlineData("gpt2", 50256, 50257, 50258)]
    [InlineData("cl100k_base", 100257, 100277, 100278)]
    [InlineData("o200k_base", 199999, 200019, 200020)]
    public void EosIsEndOfTextAndPadIsOnePastTheEncoding(string encoding, int eos, int pad, int size)
    {
        var v = new TiktokenVocabulary(encoding);
        Assert.Equal(eos, v.EosId);
        Assert.Equal(pad, v.PadId);
        Assert.Equal(size, v.Size);
        Assert.Equal("tiktoken:" + encoding, v.Name);
        Assert.Equal([eos], v.Encode("<|endoftext|>"));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("cl100k_base")]
    [InlineData("o200k_base")]
    public void RandomUnicodeRoundTripsExactly(string encoding)
    {
        var v = new TiktokenVocabulary(encoding);
        var rng = new Random(1234);
        for (int trial = 0; trial < 200; trial++)
        {
            string text = RandomText(rng, rng.Next(0, 60));
            int[] ids = v.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, v.Size - 1));
            Assert.DoesNotContain(v.PadId, ids);
            Assert.Equal(text, v.Decode(ids));
        }
    }

    [Fact]
    public void DecodeSkipsEosAndPadAndRejectsOutOfRangeIds()
    {
        var v = new TiktokenVocabulary("gpt2");
        Assert.Equal("hello world", v.Decode([v.EosId, 31373, v.PadId, 995, v.EosId]));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([v.Size]));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([-1]));
    }

    [Fact]
    public void DecodeRendersOtherSpecialTokensAsTextAndUnusedIdsAsNothing()
    {
        var v = new TiktokenVocabulary("cl100k_base");
        Assert.Equal("hello world", v.Decode([15339, 100256, 1917])); // 100256 is unused in cl100k_base
        Assert.Equal("<|fim_prefix|>", v.Decode([100258]));
    }

    [Fact]
    public void UnknownEncodingIsRefusedWithTheAcceptedNames()
    {
        var e = Assert.Throws<ArgumentException>(() => new TiktokenVocabulary("p50k_base"));
        Assert.Contains("cl100k_base", e.Message);
    }

    [Theory]
    [InlineData("tiktoken:cl100k_base", "cl100k_base")]
    [InlineData(" TIKTOKEN:gpt2 ", "gpt2")]
    [InlineData("tiktoken:o200k_base", "o200k_base")]
    public void SpecGivesTiktokenVocabulary(string spec, string encoding) =>
        Assert.Equal(encoding, Assert.IsType<TiktokenVocabulary>(Vocabularies.Create(spec)).Encoding);

    /// <summary>Text mixing ASCII, whitespace runs, combining marks, CJK, astral characters (emoji, math) and digits.</summary>
    internal static string RandomText(Random rng, int parts)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < parts; i++)
        {
            switch (rng.Next(8))
            {
                case 0: sb.Append((char)rng.Next('a', 'z' + 1)); break;
                case 1: sb.Append(new string(" \t\n\r"[rng.Next(4)], rng.Next(1, 6))); break;
                case 2: sb.Append('e').Append((char)rng.Next(0x300, 0x370)); break; // base + combining mark
                case 3: sb.Append((char)rng.Next(0x4E00, 0x9FFF)); break;
                case 4: sb.Append(char.ConvertFromUtf32(rng.Next(0x1F300, 0x1FAFF))); break;
                case 5: sb.Append(char.ConvertFromUtf32(rng.Next(0x1D400, 0x1D7FF))); break;
                case 6: sb.Append(rng.Next(0, 100000)); break;
                default: sb.Append((char)rng.Next(0x20, 0x7F)); break;
            }
        }
        return sb.ToString();
    }
}
