using System.Text;
using System.Text.Json;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Loom.Serving;

/// <summary>A server-sent-event response as OpenAI streams it: <c>data: {json}</c> events, each flushed, then <c>data: [DONE]</c>.</summary>
internal sealed class ServerSentEvents
{
    public const string ContentType = "text/event-stream";

    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] Separator = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    private readonly HttpResponse response;
    private readonly CancellationToken aborted;

    private ServerSentEvents(HttpResponse response, CancellationToken aborted)
    {
        this.response = response;
        this.aborted = aborted;
    }

    /// <summary>Sets the status and headers of an event stream (sent with the first event).</summary>
    public static ServerSentEvents Start(HttpContext http)
    {
        http.Response.StatusCode = StatusCodes.Status200OK;
        http.Response.ContentType = ContentType;
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no"; // proxies such as nginx would otherwise hold events back
        return new ServerSentEvents(http.Response, http.RequestAborted);
    }

    public async Task WriteAsync<T>(T payload)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(payload, OpenAiJson.Options);
        await response.Body.WriteAsync(Prefix, aborted).ConfigureAwait(false);
        await response.Body.WriteAsync(json, aborted).ConfigureAwait(false);
        await response.Body.WriteAsync(Separator, aborted).ConfigureAwait(false);
        await response.Body.FlushAsync(aborted).ConfigureAwait(false);
    }

    public async Task DoneAsync()
    {
        await response.Body.WriteAsync(Done, aborted).ConfigureAwait(false);
        await response.Body.FlushAsync(aborted).ConfigureAwait(false);
    }

    /// <summary>An error after the stream began, as OpenAI reports one: an event holding the error object.</summary>
    public static async Task WriteErrorAsync(HttpResponse response, ErrorBody error, CancellationToken cancellationToken)
    {
        var text = Encoding.UTF8.GetBytes($"data: {JsonSerializer.Serialize(error, OpenAiJson.Options)}\n\n");
        await response.Body.WriteAsync(text, cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }
}
