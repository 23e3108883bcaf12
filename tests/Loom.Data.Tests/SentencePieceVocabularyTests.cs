namespace Loom.Data.Tests;

public class SentencePieceVocabularyTests
{
    private const string Austen = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.";
    private const string Anne = "Anne Elliot walked to Uppercross with Captain Wentworth.";

    internal static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [Fact]
    public void UnigramIdsMatchSpmEncode()
    {
        var vocab = new SentencePieceVocabulary(Fixture("unigram.model"));
        // spm_encode --model=unigram.model --output_format=id
        Assert.Equal([179, 83, 12, 187, 32, 86, 138, 167, 29, 5, 53, 41, 720, 18, 4, 39, 12, 47, 16, 89, 199, 17, 59, 14, 5, 90, 5, 5, 105, 11, 12, 160, 597, 4, 129, 26, 17, 311, 11, 12, 460, 9],
            vocab.Encode(Austen));
        Assert.Equal([60, 102, 289, 13, 8, 317, 48, 100, 134, 9], vocab.Encode(Anne));
    }

    [Fact]
    public void BpeIdsMatchSpmEncode()
    {
        var vocab = new SentencePieceVocabulary(Fixture("bpe.model"));
        // spm_encode --model=bpe.model --output_format=id
        Assert.Equal([554, 409, 261, 259, 751, 322, 749, 542, 748, 313, 750, 571, 483, 766, 471, 753, 277, 760, 277, 761, 341, 261, 264, 278, 311, 435, 293, 520, 426, 377, 321, 283, 261, 541, 336, 744, 754, 333, 761, 484, 288, 293, 263, 432, 283, 261, 263, 725, 765],
            vocab.Encode(Austen));
        Assert.Equal([380, 442, 263, 546, 277, 275, 742, 795, 372, 266, 756, 342, 426, 348, 439, 500, 765], vocab.Encode(Anne));
    }

    [Theory]
    [InlineData("unigram.model")]
    [InlineData("bpe.model")]
    public void RoundTripsAsciiText(string model)
    {
        var vocab = new SentencePieceVocabulary(Fixture(model));
        // Characters the training text lacks would become UNK (the unigram model has no byte fallback),
        // so the samples use only characters that occur in Persuasion.
        foreach (string text in new[] { Austen, Anne, "Mary was not so repulsive and unsisterly as Elizabeth; who could say why?" })
        {
            int[] ids = vocab.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, vocab.Size - 1));
            Assert.Equal(text, vocab.Decode(ids));
        }
    }

    [Fact]
    public void ByteFallbackRoundTripsUnicode()
    {
        var vocab = new SentencePieceVocabulary(Fixture("bpe.model"));
        const string text = "Café 😀 naïve 𝄞";
        Assert.Equal(text, vocab.Decode(vocab.Encode(text)));
    }

    [Fact]
    public void UsesTheModelsPadPiece()
    {
        var vocab = new SentencePieceVocabulary(Fixture("unigram.model"));
        Assert.Equal(800, vocab.PieceCount);
        Assert.Equal(800, vocab.Size);
        Assert.Equal(2, vocab.EosId);
        Assert.Equal(3, vocab.PadId);
        Assert.Equal("sentencepiece:unigram.model", vocab.Name);
    }

    [Fact]
    public void AddsAPadIdWhereTheModelHasNone()
    {
        var vocab = new SentencePieceVocabulary(Fixture("bpe.model"));
        Assert.Equal(800, vocab.PieceCount);
        Assert.Equal(2, vocab.EosId);
        Assert.Equal(800, vocab.PadId);
        Assert.Equal(801, vocab.Size);
    }

    [Theory]
    [InlineData("unigram.model")]
    [InlineData("bpe.model")]
    public void DecodeSkipsEosAndPad(string model)
    {
        var vocab = new SentencePieceVocabulary(Fixture(model));
        int[] ids = [.. vocab.Encode(Anne), vocab.EosId, vocab.PadId, vocab.PadId];
        Assert.Equal(Anne, vocab.Decode(ids));
        Assert.Throws<ArgumentOutOfRangeException>(() => vocab.Decode([vocab.Size]));
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        string path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "spiece.model");
        var e = Assert.Throws<FileNotFoundException>(() => new SentencePieceVocabulary(path));
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NonModelFileIsRefused()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("broken.model", "this is not a protobuf message at all\n");
        var e = Assert.Throws<InvalidDataException>(() => new SentencePieceVocabulary(path));
        Assert.Contains(path, e.Message);
    }
}
