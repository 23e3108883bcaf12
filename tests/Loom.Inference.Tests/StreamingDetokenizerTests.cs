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

    [Fact]
    public void ContinuationOfAPromptEmitsOnlyTheNewText()
    {
        var vocabulary = new ByteVocabulary();
        var detokenizer = new StreamingDetokenizer(vocabulary, vocabulary.Encode("ab\u00e9"[..2]));
        Assert.Equal("", detokenizer.Push(0xC3));
        Assert.Equal("\u00e9", detokenizer.Push(0xA9));
        Assert.Equal("!", detokenizer.Push('!'));
    }

    [Fact]
    public void SentencePieceContinuationKeepsTheWordBoundarySpace()
    {
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "Loom.slnx"))) repo = Path.GetDirectoryName(repo)!;
        var vocabulary = new SentencePieceVocabulary(Path.Combine(repo, "tests", "Loom.Data.Tests", "Fixtures", "unigram.model"));
        int[] prompt = vocabulary.Encode("It is a");
        int[] word = vocabulary.Encode(" truth"); // pieces of a word that starts with "▁"
        Assert.Equal(" truth", vocabulary.Decode(prompt.Concat(word).ToArray())[vocabulary.Decode(prompt).Length..]);

        var withPrompt = new StreamingDetokenizer(vocabulary, prompt);
        Assert.Equal(" truth", string.Concat(word.Select(withPrompt.Push)) + withPrompt.Flush());
        var withoutPrompt = new StreamingDetokenizer(vocabulary); // decoding the new pieces alone loses the space
        Assert.Equal("truth", string.Concat(word.Select(withoutPrompt.Push)) + withoutPrompt.Flush());
    }
}
