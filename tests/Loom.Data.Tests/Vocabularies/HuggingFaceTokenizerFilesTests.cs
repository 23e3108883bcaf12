using Loom.Testing;

namespace Loom.Data.Tests;

/// <summary>A checkpoint's vocabulary written as Hugging Face tokenizer files, read back by Loom's tokenizer.json reader.</summary>
public sealed class HuggingFaceTokenizerFilesTests
{
    [Fact]
    public void TheByteVocabularyAsTokenizerJsonEncodesEveryTextAsTheByteVocabularyDoes()
    {
        using var temp = new TempDirectory("loom-hf-tok-");
        var written = HuggingFaceTokenizerFiles.Write("byte", temp.Path, temp.Path);
        Assert.Equal(["tokenizer.json", "tokenizer_config.json"], written);

        var bytes = new ByteVocabulary();
        var hf = Assert.IsType<HuggingFaceVocabulary>(Vocabularies.Create("hf:" + temp.File("tokenizer.json")));
        Assert.Equal((bytes.Size, bytes.EosId, bytes.PadId), (hf.Size, hf.EosId, hf.PadId));
        var rng = new Random(7);
        for (int i = 0; i < 50; i++)
        {
            string text = TiktokenVocabularyTests.RandomText(rng, 40) + " naïve café, 東京 2026 🦙👩‍💻 ∑x²";
            int[] expected = bytes.Encode(text);
            Assert.Equal(expected, hf.Encode(text));
            Assert.Equal(text, hf.Decode(expected));
        }
    }

    [Fact]
    public void VocabulariesWithoutAHuggingFaceFormAreRefusedByName()
    {
        using var temp = new TempDirectory("loom-hf-tok-");
        var e = Assert.Throws<ArgumentException>(() => HuggingFaceTokenizerFiles.Write("tiktoken:gpt2", temp.Path, temp.Path));
        Assert.Contains("'tiktoken:gpt2' has no Hugging Face tokenizer file", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Path));
    }
}
