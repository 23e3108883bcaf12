using System.Text;

namespace Loom.Inference.Chat;

/// <summary>One message of a conversation.</summary>
/// <param name="Role">"system", "user" or "assistant" (others are refused by <see cref="ChatTemplate"/>).</param>
/// <param name="Content">The message's text.</param>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Renders a conversation as the prompt text a model continues, ending where the assistant's reply
/// begins. The default format marks each turn with a role header on its own line
/// (<c>&lt;|user|&gt;</c>, <c>&lt;|assistant|&gt;</c>, <c>&lt;|system|&gt;</c>) and ends every turn with
/// <c>&lt;|end|&gt;</c>, which is also a stop sequence for the reply. The markers are plain text, so any
/// vocabulary (bytes included) can learn them from data formatted the same way.
/// </summary>
public sealed record ChatTemplate
{
    /// <summary>Loom's default template.</summary>
    public static ChatTemplate Default { get; } = new();

    /// <summary>Written before a turn's role, e.g. "&lt;|" for "&lt;|user|&gt;".</summary>
    public string RoleStart { get; init; } = "<|";

    /// <summary>Written after a turn's role, then a newline.</summary>
    public string RoleEnd { get; init; } = "|>";

    /// <summary>Ends every turn (then a newline); a reply stops when the model writes it.</summary>
    public string EndOfTurn { get; init; } = "<|end|>";

    /// <summary>The roles a conversation may use.</summary>
    public static IReadOnlyList<string> Roles { get; } = ["system", "user", "assistant"];

    /// <summary>The prompt for the assistant's next reply.</summary>
    /// <exception cref="ArgumentException">The conversation is empty or uses an unknown role.</exception>
    public string Render(IReadOnlyList<ChatTurn> conversation)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        if (conversation.Count == 0) throw new ArgumentException("the conversation has no messages; send at least one");
        var text = new StringBuilder();
        foreach (var turn in conversation)
        {
            if (!Roles.Contains(turn.Role))
                throw new ArgumentException($"unknown role '{turn.Role}'; use one of {string.Join(", ", Roles)}");
            Header(text, turn.Role).Append(turn.Content).Append(EndOfTurn).Append('\n');
        }
        return Header(text, "assistant").ToString();
    }

    private StringBuilder Header(StringBuilder text, string role) => text.Append(RoleStart).Append(role).Append(RoleEnd).Append('\n');
}
