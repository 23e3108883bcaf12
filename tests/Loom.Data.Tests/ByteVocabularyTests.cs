using System.Text;

namespace Loom.Data.Tests;

public class ByteVocabularyTests
{
    private readonly ByteVocabulary _vocab = new();

    [Fact]
    public void HasBytesThenEosThenPad()
    {
        Assert.Equal(258, _vocab.Size);
        Assert.Equal(256, _vocab.EosId);
        Assert.Equal(257, _vocab.PadId);
        Assert.Equal("byte", _vocab.Name);
    }

    [Fact]
    public void EncodesUtf8Bytes()
    {
        Assert.Equal([0x41, 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80], _vocab.Encode("Aé😀"));
        Assert.Empty(_vocab.Encode(""));
    }

    [Theory]
    [InlineData("plain ASCII")]
    [InlineData("e\u0301 a\u0308\u0323 combining marks")]
    [InlineData("𝄞 music, 😀 emoji, 𠜎 CJK ext B, \U0010FFFD last plane")]
    [InlineData("日本語のテキスト and עִבְרִית")]
    [InlineData("\0 NUL and \r\n line endings\t")]
    public void RoundTripsFixedText(string text) => Assert.Equal(text, _vocab.Decode(_vocab.Encode(text)));

    [Fact]
    public void RoundTripsRandomUnicode()
    {
        var random = new Random(1234);
        for (int trial = 0; trial < 200; trial++)
        {
            var sb = new StringBuilder();
            int length = random.Next(0, 40);
            for (int i = 0; i < length; i++) sb.Append(RandomRune(random).ToString());
            string text = sb.ToString();
            int[] ids = _vocab.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, 255));
            Assert.Equal(text, _vocab.Decode(ids));
        }
    }

    [Fact]
    public void DecodeSkipsEosAndPad()
    {
        int[] ids = [.. _vocab.Encode("ab"), _vocab.EosId, _vocab.PadId, .. _vocab.Encode("c")];
        Assert.Equal("abc", _vocab.Decode(ids));
    }

    [Fact]
    public void DecodeReplacesInvalidUtf8()
    {
        // A truncated 4-byte sequence, a lone continuation byte and an overlong encoding.
        Assert.Equal("a\uFFFD", _vocab.Decode([0x61, 0xF0, 0x9F, 0x98]));
        Assert.Equal("\uFFFDb", _vocab.Decode([0x80, 0x62]));
        Assert.Equal("\uFFFD\uFFFD", _vocab.Decode([0xC0, 0xAF]));
    }

    [Fact]
    public void DecodeRefusesIdsOutsideTheVocabulary()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _vocab.Decode([65, 258]));
        Assert.Contains("258", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => _vocab.Decode([-1]));
    }

    private static Rune RandomRune(Random random)
    {
        while (true)
        {
            int value = random.Next(6) switch
            {
                0 => random.Next(0x20, 0x7F),        // ASCII
                1 => random.Next(0x300, 0x370),      // combining diacritical marks
                2 => random.Next(0x80, 0x800),       // two-byte UTF-8
                3 => random.Next(0x800, 0x10000),    // BMP, three-byte UTF-8
                4 => random.Next(0x1F300, 0x1FAFF),  // emoji (astral)
                _ => random.Next(0x10000, 0x110000), // any astral code point
            };
            if (Rune.IsValid(value)) return new Rune(value); // skips surrogates, which UTF-8 cannot carry
        }
    }
}
