namespace Loom.Data.Tests;

public class TokenStreamTests
{
    [Fact]
    public void AppendsEosAfterEveryDocument()
    {
        var vocab = new ByteVocabulary();
        var stream = TokenStream.Encode(["ab", "", "é"], vocab);
        Assert.Equal([97, 98, 256, 256, 0xC3, 0xA9, 256], stream.Tokens.ToArray());
        Assert.Equal(7, stream.Length);
        Assert.Equal(3, stream.DocumentCount);
        Assert.Equal("abé", vocab.Decode(stream.Tokens.Span));
    }

    [Fact]
    public void RawIdsAreCopied()
    {
        int[] ids = [5, 6, 7];
        var stream = new TokenStream(ids);
        ids[0] = 99;
        Assert.Equal([5, 6, 7], stream.Tokens.ToArray());
        Assert.Equal(0, stream.DocumentCount);
        Assert.Throws<ArgumentException>(() => new TokenStream([1, -2]));
    }
}
