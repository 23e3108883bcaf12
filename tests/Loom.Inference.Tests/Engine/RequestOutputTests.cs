using Loom.Data;
using Loom.Inference.Engine;

namespace Loom.Inference.Tests.Engine;

public class RequestOutputTests
{
    // Pieces: 0 "a", 1 "b", 2 "c", 3 "x", 4 "AB", 5 "CD", 6 "y"; EOS 7.
    private static readonly PieceVocabulary Vocabulary = new(["a", "b", "c", "x", "AB", "CD", "y"]);

    private static RequestOutput Output(SamplingOptions sampling, int promptTokens = 2, int contextLength = 64) =>
        new(new GenerationRequest(Enumerable.Repeat(3, promptTokens).ToArray(), sampling), Vocabulary, contextLength);

    private static List<GenerationUpdate> Feed(RequestOutput output, params int[] tokens) =>
        tokens.Select(t => output.Accept(t, null)!).ToList();

    [Fact]
    public void AStopSequenceIsHeldBackAcrossTokensAndCut()
    {
        var output = Output(new SamplingOptions { Stop = ["abc"] });
        var updates = Feed(output, 3, 0, 1, 2); // x a b c

        Assert.Equal(["x", "", "", ""], updates.Select(u => u.Text));
        Assert.Equal([null, null, null, FinishReason.StopSequence], updates.Select(u => u.FinishReason));
        Assert.Equal(FinishReason.StopSequence, output.Finished);
        Assert.Equal(4, output.CompletionTokens);
        Assert.Equal([2], updates[^1].Tokens);
        Assert.Throws<InvalidOperationException>(() => output.Accept(0, null));
    }

    [Fact]
    public void HeldBackTextIsReleasedWhenTheStopSequenceDoesNotComplete()
    {
        var output = Output(new SamplingOptions { Stop = ["abc"] });
        var updates = Feed(output, 0, 1, 1, 0, 3); // a b b a x

        Assert.Equal(["", "", "abb", "", "ax"], updates.Select(u => u.Text));
        Assert.All(updates, u => Assert.Null(u.FinishReason));
        Assert.Equal(5, updates[^1].CompletionTokens);
        Assert.Equal(2, updates[^1].PromptTokens);
    }

    [Fact]
    public void ATokenCompletingTwoStopSequencesCutsAtTheEarlier()
    {
        // "xAB" then "CD": both "CD" (listed first) and "BC" are now complete; "BC" starts earlier.
        var output = Output(new SamplingOptions { Stop = ["CD", "BC"] });
        var updates = Feed(output, 3, 4, 5);

        Assert.Equal("xA", string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(FinishReason.StopSequence, updates[^1].FinishReason);
    }

    [Fact]
    public void EosFinishesWithStopAndIsNotCounted()
    {
        var output = Output(new SamplingOptions { Stop = ["ab"] });
        var updates = Feed(output, 3, 0, Vocabulary.EosId);

        Assert.Equal(["x", "", "a"], updates.Select(u => u.Text)); // the held-back "a" is sent with the finish
        Assert.Equal(FinishReason.Stop, updates[^1].FinishReason);
        Assert.Empty(updates[^1].Tokens);
        Assert.Equal(2, output.CompletionTokens);
    }

    [Fact]
    public void EosIsAnOrdinaryTokenWhenStopAtEosIsOff()
    {
        var output = Output(new SamplingOptions { StopAtEos = false, MaxTokens = 2 });
        var updates = Feed(output, Vocabulary.EosId, 0);

        Assert.Equal(["", "a"], updates.Select(u => u.Text));
        Assert.Equal(FinishReason.Length, output.Finished);
        Assert.Equal(2, output.CompletionTokens);
    }

    [Fact]
    public void MaxTokensFinishesWithLength()
    {
        var output = Output(new SamplingOptions { MaxTokens = 3, Stop = ["abc"] });
        var updates = Feed(output, 3, 0, 1);

        Assert.Equal(["x", "", "ab"], updates.Select(u => u.Text)); // the held-back tail is flushed at the end
        Assert.Equal(FinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(3, updates[^1].CompletionTokens);
    }

    [Fact]
    public void TheContextLengthFinishesWithLengthAndAFullPromptIsRefused()
    {
        var output = Output(new SamplingOptions { MaxTokens = 100 }, promptTokens: 8, contextLength: 10);
        var updates = Feed(output, 0, 1);
        Assert.Equal(FinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(2, output.CompletionTokens);

        var e = Assert.Throws<ArgumentException>(() => Output(new SamplingOptions(), promptTokens: 10, contextLength: 10));
        Assert.Contains("context", e.Message);
    }

    [Fact]
    public void AnIncompleteCharacterIsHeldUntilCompletedAndFlushedAtEos()
    {
        var bytes = new ByteVocabulary();
        var output = new RequestOutput(new GenerationRequest(bytes.Encode("hi")), bytes, 64);
        var updates = new[] { 0xC3, 0xA9, 0xE2 }.Select(b => output.Accept(b, null)!).ToList();
        updates.Add(output.Accept(ByteVocabulary.Eos, null)!);

        Assert.Equal(["", "\u00e9", "", "\uFFFD"], updates.Select(u => u.Text));
        Assert.Equal(bytes.Decode([0xC3, 0xA9, 0xE2]), string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(FinishReason.Stop, output.Finished);
    }

    [Fact]
    public void CancelSendsTheHeldBackTextOnce()
    {
        var output = Output(new SamplingOptions { Stop = ["abc"] });
        Feed(output, 0);
        var cancelled = output.Cancel();

        Assert.Equal("a", cancelled.Text);
        Assert.Equal(FinishReason.Cancelled, cancelled.FinishReason);
        Assert.Throws<InvalidOperationException>(() => output.Cancel());
    }
}
