namespace Loom.Inference.Chat;

/// <summary>
/// Renders a conversation as the prompt text a model continues, ending where the assistant's reply begins,
/// and names the marker that ends a reply. Loom's own formats are <see cref="ChatTemplate"/>; a Hugging Face
/// checkpoint's Jinja template is <see cref="HuggingFaceChatTemplate"/>.
/// </summary>
public interface IChatTemplate
{
    /// <summary>What ends the model's turn; a reply stops when the model writes it (so it is never empty).</summary>
    string EndOfTurn { get; }

    /// <summary>The prompt for the assistant's next reply.</summary>
    /// <param name="conversation">The messages so far, at least one.</param>
    /// <exception cref="ArgumentException">The conversation is empty, uses a role the template refuses, or breaks a rule of the template (e.g. roles that do not alternate).</exception>
    string Render(IReadOnlyList<ChatTurn> conversation);

    /// <summary>The prompt for the assistant's next reply, offering <paramref name="options"/>' tools and opening a thinking segment when asked.</summary>
    /// <param name="conversation">The messages so far, at least one; assistant turns may hold tool calls, tool turns results.</param>
    /// <param name="options">The tools and thinking.</param>
    /// <exception cref="ArgumentException">As <see cref="Render(IReadOnlyList{ChatTurn})"/>; also a tool turn without a call id.</exception>
    string Render(IReadOnlyList<ChatTurn> conversation, ChatPromptOptions options);
}
