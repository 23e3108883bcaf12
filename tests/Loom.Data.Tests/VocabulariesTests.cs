namespace Loom.Data.Tests;

public class VocabulariesTests
{
    [Theory]
    [InlineData("byte")]
    [InlineData(" BYTE ")]
    public void ByteSpecGivesByteVocabulary(string spec) => Assert.IsType<ByteVocabulary>(Vocabularies.Create(spec));

    [Fact]
    public void ModelPathGivesSentencePiece()
    {
        var vocab = Vocabularies.Create(SentencePieceVocabularyTests.Fixture("unigram.model"));
        var sp = Assert.IsType<SentencePieceVocabulary>(vocab);
        Assert.Equal(800, sp.PieceCount);
    }

    [Fact]
    public void MissingModelFileThrowsFileNotFound() =>
        Assert.Throws<FileNotFoundException>(() => Vocabularies.Create("/nonexistent/folder/x.model"));

    [Theory]
    [InlineData("gpt2")]
    [InlineData("tokenizer.json")]
    [InlineData("")]
    public void OtherSpecsAreRefusedWithTheAcceptedForms(string spec)
    {
        var e = Assert.Throws<ArgumentException>(() => Vocabularies.Create(spec));
        Assert.Contains($"'{spec}'", e.Message);
        Assert.Contains("byte", e.Message);
        Assert.Contains(".model", e.Message);
    }
}
