using System.Text;
using Loom.Inference.Chat;

namespace Loom.Inference.Tests.Chat;

public class ReplyParserTests
{
    private const string TwoCalls =
        "Checking.\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": {\"n\": 2}}}</tool_call>\n"
        + "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>";

    [Fact]
    public void CallsAreSplitFromTheText()
    {
        var reply = ReplyParser.Parse(TwoCalls, thinking: false);
        Assert.Null(reply.Reasoning);
        Assert.Equal("Checking.\n", reply.Content);
        Assert.Equal(["get_weather", "get_time"], reply.ToolCalls.Select(c => c.Name));
        Assert.Equal(["{\"city\": \"Paris\", \"days\": {\"n\": 2}}", "{}"], reply.ToolCalls.Select(c => c.Arguments));
        Assert.All(reply.ToolCalls, c => Assert.Matches("^call_[0-9a-f]{24}$", c.Id));
        Assert.NotEqual(reply.ToolCalls[0].Id, reply.ToolCalls[1].Id);
    }

    [Fact]
    public void ThinkingIsSplitFromTheAnswer()
    {
        var reply = ReplyParser.Parse("Hmm, sunny.\n</think>\n\nIt is sunny.", thinking: true);
        Assert.Equal("Hmm, sunny.", reply.Reasoning);
        Assert.Equal("It is sunny.", reply.Content);
        var unfinished = ReplyParser.Parse("Still thinking </thi", thinking: true);
        Assert.Equal("Still thinking </thi", unfinished.Reasoning);
        Assert.Equal("", unfinished.Content);
        Assert.Equal("a </think> b", ReplyParser.Parse("a </think> b", thinking: false).Content);
    }

    [Fact]
    public void BlocksThatAreNotCallsStayText()
    {
        const string text = "x<tool_call>not a call</tool_call>y<tool_call>{\"name\": 3}</tool_call>";
        var reply = ReplyParser.Parse(text, thinking: false);
        Assert.Empty(reply.ToolCalls);
        Assert.Equal(text, reply.Content);
        var otherOrder = ReplyParser.Parse("<tool_call>{\"arguments\": {\"a\": 1}, \"name\": \"f\"}</tool_call>", thinking: false);
        Assert.Equal(new ToolCall(otherOrder.ToolCalls[0].Id, "f", "{\"a\": 1}"), Assert.Single(otherOrder.ToolCalls));
    }

    [Fact]
    public void StreamingCharacterByCharacterGivesTheWholeReplyWithArgumentsInPieces()
    {
        string text = "Plan.\n</think>\n" + TwoCalls;
        var whole = ReplyParser.Parse(text, thinking: true);
        var parser = new ReplyParser(thinking: true);
        var pieces = text.SelectMany(c => parser.Push(c.ToString())).Concat(parser.Finish()).ToList();
        Assert.Equal(whole.Reasoning, string.Concat(pieces.Select(p => p.Reasoning)));
        Assert.Equal(whole.Content, string.Concat(pieces.Select(p => p.Content)));
        Assert.Equal(whole.ToolCalls.Select(c => c.Name), pieces.Where(p => p.CallName is not null).Select(p => p.CallName));
        Assert.Equal([0, 1], pieces.Where(p => p.CallName is not null).Select(p => p.CallIndex!.Value));
        for (int i = 0; i < 2; i++)
        {
            var arguments = pieces.Where(p => p.Arguments is not null && p.CallIndex == i).Select(p => p.Arguments!).ToList();
            Assert.Equal(whole.ToolCalls[i].Arguments, string.Concat(arguments));
            if (i == 0) Assert.True(arguments.Count > 5, $"the arguments came in {arguments.Count} pieces");
        }
        // No piece holds a marker or a part of one.
        Assert.All(pieces, p => Assert.DoesNotContain("<", (p.Reasoning ?? "") + (p.Arguments ?? "")));
        Assert.Equal(2, parser.ToolCallCount);
    }

    [Fact]
    public void AnUnclosedCallKeepsTheArgumentsItHas()
    {
        var parser = new ReplyParser(thinking: false);
        var pieces = parser.Push("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1, 2").Concat(parser.Finish()).ToList();
        Assert.Equal("f", Assert.Single(pieces, p => p.CallName is not null).CallName);
        Assert.Equal("{\"a\": [1, 2", string.Concat(pieces.Select(p => p.Arguments)));

        // Cut off after its arguments, before the closing marker: the call object's brace is not part of them.
        var cut = new ReplyParser(thinking: false);
        var cutPieces = cut.Push("<tool_call>{\"name\": \"f\", \"arguments\": {\"on\": true}}</tool").Concat(cut.Finish()).ToList();
        Assert.Equal("{\"on\": true}", string.Concat(cutPieces.Select(p => p.Arguments)));
    }
}
