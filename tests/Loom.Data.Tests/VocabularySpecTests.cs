using Loom.Data;

namespace Loom.Data.Tests;

public class VocabularySpecTests
{
    [Theory]
    [InlineData("byte", null)]
    [InlineData("tiktoken:gpt2", null)]
    [InlineData("/x/y/spm.model", "/x/y/spm.model")]
    [InlineData("/x/y/spm.model+extra_ids=100", "/x/y/spm.model")]
    [InlineData("byte+extra_ids=3", null)]
    [InlineData("hf:/x/y/tokenizer.json", "/x/y/tokenizer.json")]
    [InlineData("hf:/x/y+extra_ids=5", "/x/y/tokenizer.json")]
    public void ModelFileIsFoundInsideAnySpec(string spec, string? file) => Assert.Equal(file, Vocabularies.ModelFile(spec));

    [Fact]
    public void WithModelFileKeepsTheExtraIdsSuffix()
    {
        Assert.Equal("spm.model+extra_ids=100", Vocabularies.WithModelFile("/x/y/spm.model+extra_ids=100", "spm.model"));
        Assert.Equal("/ckpt/spm.model", Vocabularies.WithModelFile("spm.model", "/ckpt/spm.model"));
        Assert.Throws<ArgumentException>(() => Vocabularies.WithModelFile("byte", "a.model"));
        Assert.Equal("hf:tokenizer.json+extra_ids=5", Vocabularies.WithModelFile("hf:/x/y+extra_ids=5", "tokenizer.json"));
        Assert.Empty(Vocabularies.CompanionFiles("/x/y/spm.model"));
    }
}
