using System.Net;
using Loom.Inference.Chat;

namespace Loom.Serving;

/// <summary>Where and how <see cref="LoomServer"/> listens; validated as it is built.</summary>
public sealed record ServerOptions
{
    /// <summary>The environment variable that may hold API keys, comma-separated.</summary>
    public const string ApiKeysVariable = "LOOM_API_KEYS";

    /// <summary>The address to listen on: an IP address (127.0.0.1, 0.0.0.0, ::) or localhost.</summary>
    public string Host
    {
        get;
        init => field = value == "localhost" || IPAddress.TryParse(value, out _)
            ? value
            : throw new ArgumentException($"host '{value}' is not an IP address or localhost: use e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)");
    } = "127.0.0.1";

    /// <summary>The TCP port; 0 picks a free one (see <see cref="LoomServer.Address"/>).</summary>
    public int Port
    {
        get;
        init => field = value is >= 0 and <= 65535 ? value : throw new ArgumentException($"port {value} is out of range: use 0 (any free port) to 65535");
    } = 8000;

    /// <summary>
    /// Keys a client must send as <c>Authorization: Bearer KEY</c>; every endpoint except /health
    /// refuses a request without one of them (401). Empty: no key needed.
    /// </summary>
    public IReadOnlyList<string> ApiKeys
    {
        get;
        init => field = value is null ? []
            : value.Any(k => string.IsNullOrWhiteSpace(k) || k.Any(char.IsWhiteSpace))
                ? throw new ArgumentException("an API key is empty or contains whitespace: keys are single words such as sk-local-1")
                : value;
    } = [];

    /// <summary>On shutdown, how long running requests may go on before they are cut off.</summary>
    public TimeSpan ShutdownTimeout
    {
        get;
        init => field = value >= TimeSpan.Zero ? value : throw new ArgumentException($"shutdown timeout {value} is negative: use zero or more");
    } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How chat messages become a prompt; its end-of-turn marker ends every reply. Null (the default): the template the
    /// model's vocabulary brings (<see cref="Loom.Inference.Chat.ChatTemplate.ForVocabulary"/>: a Hugging Face tokenizer's Jinja chat
    /// template, else <see cref="Loom.Inference.Chat.ChatTemplate.Default"/>).
    /// </summary>
    public IChatTemplate? ChatTemplate { get; init; }

    /// <summary>Log warnings and errors (and ASP.NET Core's start and stop lines) to the console.</summary>
    public bool LogToConsole { get; init; }

    /// <summary>The keys in a comma-separated list such as <see cref="ApiKeysVariable"/>'s value; none for null or blank.</summary>
    public static IReadOnlyList<string> ParseApiKeyList(string? commaSeparated) =>
        string.IsNullOrWhiteSpace(commaSeparated) ? [] : [.. commaSeparated.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
}
