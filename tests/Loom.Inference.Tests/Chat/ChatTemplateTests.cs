using Loom.Inference.Chat;

namespace Loom.Inference.Tests.Chat;

public class ChatTemplateTests
{
    [Fact]
    public void TheDefaultTemplateRendersAsDocumented()
    {
        string prompt = ChatTemplate.Default.Render(
        [
            new ChatTurn("system", "Be brief."),
            new ChatTurn("user", "Hi"),
            new ChatTurn("assistant", "Hello!"),
            new ChatTurn("user", "Name a color."),
        ]);
        Assert.Equal(
            "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nName a color.<|end|>\n<|assistant|>\n",
            prompt);
        Assert.Equal("<|end|>", ChatTemplate.Default.EndOfTurn);
    }

    [Fact]
    public void ChatMlRendersAsDocumented()
    {
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", ChatTemplate.ChatMl.Render([new ChatTurn("user", "Hi")]));
        Assert.Equal("<|im_end|>", ChatTemplate.ChatMl.EndOfTurn);
    }

    [Fact]
    public void ACustomTemplateUsesItsMarkers()
    {
        var template = ChatTemplate.Default with { RoleStart = "### ", RoleEnd = ":", EndOfTurn = "</s>" };
        Assert.Equal("### user:\nHi</s>\n### assistant:\n", template.Render([new ChatTurn("user", "Hi")]));
    }

    [Fact]
    public void UnknownRolesAndEmptyConversationsAreRefused()
    {
        var role = Assert.Throws<ArgumentException>(() => ChatTemplate.Default.Render([new ChatTurn("user", "Hi"), new ChatTurn("narrator", "42")]));
        Assert.Contains("'narrator'", role.Message);
        Assert.Contains("system, user, assistant, tool", role.Message);
        Assert.Throws<ArgumentException>(() => ChatTemplate.Default.Render([]));
        Assert.Throws<ArgumentException>(() => ChatTemplate.Default with { EndOfTurn = "" });
    }

    [Fact]
    public void TemplatesAreFoundByName()
    {
        Assert.Same(ChatTemplate.Default, ChatTemplate.Named("loom"));
        Assert.Same(ChatTemplate.ChatMl, ChatTemplate.Named("ChatML"));
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.Named("llama"));
        Assert.Contains("loom, chatml", e.Message);
    }
}
