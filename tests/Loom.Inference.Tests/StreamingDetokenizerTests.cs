using System.Text;
using Loom.Data;
using Loom.Inference;

namespace Loom.Inference.Tests;

public class StreamingDetokenizerTests
{
    [Fact]
    public void MultiByteCharactersAreEmittedOnlyWhenComplete()
    {
        var vocabulary = new ByteVocabulary();
        var detokenizer = new StreamingDetokenizer(vocabulary);
        const string text = "é😀a";
        var deltas = Encoding.UTF8.GetBytes(text).Select(b => detokenizer.Push(b)).ToList();
        Assert.Equal(new[] { "", "é", "", "", "", "😀", "a" }, deltas);
        Assert.Equal("", detokenizer.Flush());
        Assert.Equal(text, string.Concat(deltas));
    }

    [Fact]
    public void FlushReturnsAnIncompleteTail()
    {
        var detokenizer = new StreamingDetokenizer(new ByteVocabulary());
        Assert.Equal("a", detokenizer.Push('a'));
        Assert.Equal("", detokenizer.Push(0xE2)); // first byte of a three-byte character
        Assert.Equal("\uFFFD", detokenizer.Flush());
    }
}
