using System.Net;
using System.Security.Cryptography;
using System.Text;
using Loom.Inference.Engine;
using Loom.Serving.Metrics;
using Loom.Serving.OpenAi;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Loom.Serving;

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="IGenerationEngine"/> (Kestrel):
/// POST /v1/completions and /v1/chat/completions (JSON or server-sent events), GET /v1/models,
/// GET /health and GET /metrics (Prometheus text). Errors are OpenAI's JSON error objects. A client
/// that disconnects cancels its request. <see cref="StopAsync"/> stops accepting connections and lets
/// running requests finish for up to <see cref="ServerOptions.ShutdownTimeout"/>. The server does not
/// own the engine: dispose the engine after the server.
/// </summary>
public sealed class LoomServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ServerState state;
    private int stopped;

    private LoomServer(WebApplication app, ServerState state, Uri address)
    {
        this.app = app;
        this.state = state;
        Address = address;
    }

    /// <summary>The address the server listens on, e.g. http://127.0.0.1:8000/ (with the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>The OpenAI base URL clients are given, e.g. http://127.0.0.1:8000/v1 (no trailing slash, as OpenAI's own).</summary>
    public Uri ApiBase => new(Address, "v1");

    /// <summary>The engine requests go to.</summary>
    public IGenerationEngine Engine => state.Engine;

    /// <summary>Starts listening; returns once the server accepts connections.</summary>
    /// <exception cref="IOException">The address is in use.</exception>
    public static async Task<LoomServer> StartAsync(IGenerationEngine engine, ServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(LoomServer).Assembly.GetName().Name });
        builder.Logging.ClearProviders();
        if (options.LogToConsole) builder.Logging.AddSimpleConsole(c => c.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        // Signals are the host program's business (loom serve maps SIGTERM and Ctrl-C to StopAsync);
        // an embedded server, as in tests and benchmarks, must not react to them.
        builder.Services.AddSingleton<IHostLifetime, EmbeddedLifetime>();
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (options.Host == "localhost") kestrel.ListenLocalhost(options.Port);
            else kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
        });

        var app = builder.Build();
        var state = new ServerState(engine, options, new ServerMetrics(TimeProvider.System));
        app.Use(ErrorsAsJson);
        app.Use(RequireApiKey(options.ApiKeys));
        app.MapPost("/v1/completions", http => CompletionsEndpoint.HandleAsync(http, state));
        app.MapPost("/v1/chat/completions", http => ChatCompletionsEndpoint.HandleAsync(http, state));
        app.MapGet("/v1/models", () => Results.Json(Models(state), OpenAiJson.Options));
        app.MapGet("/v1/models/{**id}", (string id) => id == engine.ModelName
            ? Results.Json(Models(state).Data[0], OpenAiJson.Options)
            : throw ApiException.ModelNotFound(id, engine.ModelName));
        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/metrics", () => Results.Text(state.Metrics.Render(engine.Stats), PrometheusText.ContentType));
        app.MapFallback(http => throw NoRoute(http.Request));

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        string bound = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new LoomServer(app, state, new Uri(bound.EndsWith('/') ? bound : bound + "/"));
    }

    /// <summary>
    /// Stops accepting connections, waits for running requests to finish for up to the shutdown
    /// timeout (or until <paramref name="cancellationToken"/>), then cuts off the rest, which
    /// cancels them in the engine. Safe to call more than once.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref stopped, 1) == 0) await app.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the server (as <see cref="StopAsync"/>) and frees it.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>405 for a known path asked with the wrong method, else 404.</summary>
    private static ApiException NoRoute(HttpRequest request)
    {
        string path = request.Path.Value ?? "";
        string? allowed = path switch
        {
            "/v1/completions" or "/v1/chat/completions" => "POST",
            "/health" or "/metrics" or "/v1/models" => "GET",
            _ when path.StartsWith("/v1/models/", StringComparison.Ordinal) => "GET",
            _ => null,
        };
        if (allowed is null) return ApiException.NotFound(request.Method, path);
        request.HttpContext.Response.Headers.Allow = allowed;
        return ApiException.MethodNotAllowed(request.Method, path, allowed);
    }

    private static ModelList Models(ServerState state) =>
        new("list", [new ModelCard(state.Engine.ModelName, "model", state.StartedUnixSeconds, "loom")]);

    /// <summary>Writes an <see cref="ApiException"/> (or any failure, as a 500) as OpenAI's error object, and gives bodiless error statuses (405) one.</summary>
    private static async Task ErrorsAsJson(HttpContext http, RequestDelegate next)
    {
        try
        {
            await next(http).ConfigureAwait(false);
            if (http.Response.StatusCode >= 400 && !http.Response.HasStarted && http.Response.ContentType is null)
                await WriteError(http, ApiException.FromStatus(http.Response.StatusCode, http.Request.Method, http.Request.Path)).ConfigureAwait(false);
        }
        catch (Exception) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away: there is no one to answer; the engine has cancelled its request.
        }
        catch (ApiException e)
        {
            await WriteError(http, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            await WriteError(http, ApiException.InvalidRequest(e.Message)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger<LoomServer>()
                .LogError(e, "{Method} {Path} failed", http.Request.Method, http.Request.Path);
            await WriteError(http, ApiException.Internal(e.Message.Split('\n')[0])).ConfigureAwait(false);
        }
    }

    private static async Task WriteError(HttpContext http, ApiException error)
    {
        if (http.Response.HasStarted)
        {
            // Mid-stream: the status is sent; report the error as an event, as OpenAI does.
            if (http.Response.ContentType == ServerSentEvents.ContentType)
                await ServerSentEvents.WriteErrorAsync(http.Response, error.Body, http.RequestAborted).ConfigureAwait(false);
            return;
        }
        string allow = http.Response.Headers.Allow.ToString();
        http.Response.Clear();
        http.Response.StatusCode = error.Status;
        if (allow.Length > 0) http.Response.Headers.Allow = allow;
        if (error.Status == StatusCodes.Status401Unauthorized) http.Response.Headers.WWWAuthenticate = "Bearer";
        if (error.Status == StatusCodes.Status429TooManyRequests) http.Response.Headers.RetryAfter = "1";
        await http.Response.WriteAsJsonAsync(error.Body, OpenAiJson.Options, http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>With keys configured, every path but /health needs <c>Authorization: Bearer KEY</c> with one of them.</summary>
    private static Func<HttpContext, RequestDelegate, Task> RequireApiKey(IReadOnlyList<string> keys)
    {
        var accepted = keys.Select(k => Encoding.UTF8.GetBytes(k)).ToList();
        return (http, next) =>
        {
            if (accepted.Count == 0 || http.Request.Path.Equals("/health", StringComparison.OrdinalIgnoreCase)) return next(http);
            string header = http.Request.Headers.Authorization.ToString();
            const string scheme = "Bearer ";
            if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) || header.Length == scheme.Length)
                throw ApiException.MissingApiKey();
            byte[] given = Encoding.UTF8.GetBytes(header[scheme.Length..].Trim());
            // Constant-time comparison, so response timing does not reveal how much of a key matched.
            bool valid = false;
            foreach (byte[] key in accepted) valid |= CryptographicOperations.FixedTimeEquals(given, key);
            if (!valid) throw ApiException.WrongApiKey();
            return next(http);
        };
    }

    /// <summary>A host lifetime that ignores process signals: whoever embeds the server stops it.</summary>
    private sealed class EmbeddedLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
