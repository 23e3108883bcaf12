using System.Text.Json;
using Loom.Data;
using Loom.Inference.Chat;
using Loom.Inference.Constraints;

namespace Loom.Inference.Tests.Chat;

public class ChatConstraintTests
{
    private static readonly ByteVocabulary Bytes = new();

    private static readonly ToolDeclaration Flag = new("set_flag", null,
        JsonDocument.Parse("""{"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"], "additionalProperties": false}""").RootElement.Clone())
    { Strict = true };

    private static ChatConstraintFactory Factory(IVocabulary vocabulary) => new(new TokenConstraintFactory(vocabulary));

    private static bool[] Allowed(ITokenConstraint constraint, IVocabulary vocabulary)
    {
        var allowed = new bool[vocabulary.Size];
        constraint.FillAllowed(allowed);
        return allowed;
    }

    private static void Write(ITokenConstraint constraint, IVocabulary vocabulary, string text)
    {
        foreach (int token in vocabulary.Encode(text))
        {
            Assert.True(Allowed(constraint, vocabulary)[token], $"'{vocabulary.Decode([token])}' is not allowed while writing '{text}'");
            constraint.Advance(token);
        }
    }

    private static string OnlyAllowed(ITokenConstraint constraint, IVocabulary vocabulary)
    {
        var allowed = Allowed(constraint, vocabulary);
        return string.Join("|", Enumerable.Range(0, vocabulary.Size).Where(id => allowed[id] && id != vocabulary.PadId).Select(id => id == vocabulary.EosId ? "<eos>" : vocabulary.Decode([id])));
    }

    [Fact]
    public void ThinkingThatClosesItselfIsCountedWithItsMarker()
    {
        var thinking = new ThinkingBudgetConstraint(Factory(Bytes), 100, then: null);
        Assert.False(Allowed(thinking, Bytes)[Bytes.EosId]); // thinking must close before the reply ends
        Assert.False(thinking.IsComplete);
        Write(thinking, Bytes, "ok</think>");
        Assert.True(thinking.ThinkingDone);
        Assert.False(thinking.Forced);
        Assert.Equal(10, thinking.ThinkingTokens);
        Assert.True(Allowed(thinking, Bytes).All(a => a)); // then the answer is free
        Write(thinking, Bytes, "answer");
        Assert.Equal(10, thinking.ThinkingTokens);
        Assert.True(thinking.IsComplete);
    }

    [Fact]
    public void ASpentBudgetForcesTheClosing()
    {
        var thinking = new ThinkingBudgetConstraint(Factory(Bytes), 3, then: null);
        Write(thinking, Bytes, "abc");
        Assert.True(thinking.Forced);
        foreach (char c in ThinkingBudgetConstraint.ForcedClosing)
        {
            Assert.Equal(c.ToString(), OnlyAllowed(thinking, Bytes));
            thinking.Advance(Bytes.Encode(c.ToString())[0]);
        }
        Assert.True(thinking.ThinkingDone);
        Assert.Equal(3 + ThinkingBudgetConstraint.ForcedClosing.Length, thinking.ThinkingTokens);
        Assert.True(Allowed(thinking, Bytes)[Bytes.EosId]);
    }

    [Fact]
    public void NoTokenWritesPastTheMarkerThatEndsThinking()
    {
        var pieces = new PieceVocabulary(["a", "</think>", "</think>b", "</thi", "nk>", "nk>b"]);
        var thinking = new ThinkingBudgetConstraint(Factory(pieces), 100, then: null);
        Assert.Equal("a|</think>|</thi|nk>|nk>b", OnlyAllowed(thinking, pieces)); // "</think>b" would write past it
        Write(thinking, pieces, "</thi");
        Assert.Equal("a|</think>|</thi|nk>", OnlyAllowed(thinking, pieces)); // now "nk>b" would
        Write(thinking, pieces, "nk>");
        Assert.True(thinking.ThinkingDone);
    }

    [Fact]
    public void ARequiredCallStartsAtOnceAndEndsTheReply()
    {
        var policy = new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Required, ParallelCalls = false };
        var constraint = Factory(Bytes).ForReply(policy, thinkingBudget: null)!();
        Assert.Equal("<", OnlyAllowed(constraint, Bytes));
        Write(constraint, Bytes, "<tool_call>{\"name\": \"set_flag\", \"arguments\": {\"on\": true}}</tool_call>");
        Assert.Equal("<eos>", OnlyAllowed(constraint, Bytes));
    }

    [Fact]
    public void AnAutoReplyIsFreeUntilItStartsACallThenTheCallIsValid()
    {
        var policy = new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Auto, ParallelCalls = false };
        var constraint = Factory(Bytes).ForReply(policy, thinkingBudget: null)!();
        Assert.True(Allowed(constraint, Bytes).All(a => a));
        Write(constraint, Bytes, "Sure. <tool_call>");
        Assert.Equal("{", OnlyAllowed(constraint, Bytes));
        Write(constraint, Bytes, "{\"name\": \"set_flag\", \"arguments\": {\"on\": false}}</tool_call>");
        Assert.Equal("<eos>", OnlyAllowed(constraint, Bytes)); // one call only: parallel calls are off
    }

    [Fact]
    public void ThinkingComesBeforeTheCalls()
    {
        var policy = new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Function, FunctionName = "set_flag" };
        ThinkingBudgetConstraint? made = null;
        var constraint = Factory(Bytes).ForReply(policy, thinkingBudget: 2, m => made = m)!();
        Assert.Same(made, constraint);
        Write(constraint, Bytes, "hm" + ThinkingBudgetConstraint.ForcedClosing);
        Assert.Equal("<", OnlyAllowed(constraint, Bytes));
        Write(constraint, Bytes, "<tool_call>{\"name\": \"set_flag\", \"arguments\": {\"on\": true}}</tool_call>");
        Assert.True(constraint.IsComplete);
        Assert.Equal(2 + ThinkingBudgetConstraint.ForcedClosing.Length, made!.ThinkingTokens);
    }

    [Fact]
    public void PoliciesAreChecked()
    {
        Assert.Throws<ArgumentException>(() => new ToolCallPolicy { Tools = [Flag, Flag] });
        Assert.Throws<ArgumentException>(() => new ToolCallPolicy { Tools = [] });
        Assert.Throws<ArgumentException>(() => ChatConstraintFactory.ForcedCalls(new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Function, FunctionName = "other" }));
        Assert.Null(ChatConstraintFactory.ForcedCalls(new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Auto }));
    }

    [Fact]
    public void ASentencePieceReplyFindsTheCallMarkerAcrossWordPieces()
    {
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "Loom.slnx"))) repo = Path.GetDirectoryName(repo)!;
        // The BPE fixture has byte fallback: "<" and "_", absent from Persuasion, are byte pieces.
        var pieces = new SentencePieceVocabulary(Path.Combine(repo, "tests", "Loom.Data.Tests", "Fixtures", "bpe.model"));
        var policy = new ToolCallPolicy { Tools = [Flag], Mode = ToolChoiceMode.Auto, ParallelCalls = false };
        var constraint = Factory(pieces).ForReply(policy, thinkingBudget: null)!();
        // The marker arrives in pieces, the first with a word-boundary ▁ (a space in the output's bytes).
        Write(constraint, pieces, "It is a truth. <tool_call>");
        var allowed = Allowed(constraint, pieces);
        var texts = Enumerable.Range(0, pieces.Size).Where(id => allowed[id]).Select(id => pieces.Decode([id])).ToList();
        Assert.NotEmpty(texts);
        Assert.All(texts, t => Assert.StartsWith("{", t.TrimStart(), StringComparison.Ordinal)); // the call's JSON, nothing else
    }
}
