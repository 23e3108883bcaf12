using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Serving.Metrics;
using Loom.Serving.OpenAi;

namespace Loom.Serving;

/// <summary>
/// One request running in the engine, as an endpoint consumes it: started so that a refused request
/// (queue full, prompt too long) becomes an HTTP error before any response is written, and timed
/// token by token for the server's metrics.
/// </summary>
internal sealed class EngineRun : IAsyncDisposable
{
    private readonly IAsyncEnumerator<GenerationUpdate> updates;
    private readonly ServerMetrics metrics;
    private readonly long arrived;
    private readonly CancellationToken aborted;
    private GenerationUpdate? pending; // the first update, read by StartAsync
    private long lastTokenAt;
    private bool sawToken;
    private string? outcome;

    private EngineRun(IAsyncEnumerator<GenerationUpdate> updates, ServerMetrics metrics, long arrived, CancellationToken aborted)
    {
        this.updates = updates;
        this.metrics = metrics;
        this.arrived = arrived;
        this.aborted = aborted;
    }

    /// <summary>
    /// Queues the request and waits for its first update (for a queued request, until it runs and
    /// has a token). <paramref name="arrived"/> is the request's arrival timestamp (time to first token
    /// counts from it); <paramref name="aborted"/> is the client's disconnect, which cancels the request.
    /// </summary>
    /// <exception cref="ApiException">429 when the queue is full; 400 when the engine refuses the prompt.</exception>
    /// <exception cref="OperationCanceledException">The client went away while the request waited.</exception>
    public static async Task<EngineRun> StartAsync(IGenerationEngine engine, GenerationRequest request, ServerMetrics metrics, long arrived, CancellationToken aborted)
    {
        var run = new EngineRun(engine.GenerateAsync(request, aborted).GetAsyncEnumerator(aborted), metrics, arrived, aborted);
        try
        {
            if (await run.updates.MoveNextAsync().ConfigureAwait(false)) run.pending = run.Observe(run.updates.Current);
            else run.outcome = "error";
            return run;
        }
        catch (EngineOverloadedException e)
        {
            await run.updates.DisposeAsync().ConfigureAwait(false);
            throw ApiException.Overloaded(e.Message);
        }
        catch (ArgumentException e)
        {
            await run.updates.DisposeAsync().ConfigureAwait(false);
            throw ApiException.InvalidRequest(e.Message, "prompt", "context_length_exceeded");
        }
        catch
        {
            await run.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The request's updates, ending with the one that carries its finish reason.</summary>
    public async IAsyncEnumerable<GenerationUpdate> ReadAllAsync()
    {
        if (pending is { } first)
        {
            pending = null;
            yield return first;
            if (first.FinishReason is not null) yield break;
        }
        while (outcome is null && await updates.MoveNextAsync().ConfigureAwait(false))
        {
            var update = Observe(updates.Current);
            yield return update;
            if (update.FinishReason is not null) yield break;
        }
    }

    private GenerationUpdate Observe(GenerationUpdate update)
    {
        int tokens = update.Tokens.Count;
        if (tokens > 0)
        {
            long now = metrics.Time.GetTimestamp();
            if (!sawToken)
            {
                metrics.TimeToFirstToken.Observe(metrics.Time.GetElapsedTime(arrived, now).TotalSeconds);
                sawToken = true;
            }
            else
            {
                // An update may carry several tokens; each gets an equal share of the gap.
                double gap = metrics.Time.GetElapsedTime(lastTokenAt, now).TotalSeconds / tokens;
                for (int i = 0; i < tokens; i++) metrics.InterTokenLatency.Observe(gap);
            }
            lastTokenAt = now;
            metrics.GeneratedTokens.Add(tokens);
        }
        if (update.FinishReason is FinishReason reason) outcome = ServerMetrics.Outcome(reason);
        return update;
    }

    /// <summary>Stops the request if it still runs (the engine frees what it holds) and counts how it ended.</summary>
    public async ValueTask DisposeAsync()
    {
        await updates.DisposeAsync().ConfigureAwait(false);
        metrics.Finished(outcome ?? (aborted.IsCancellationRequested ? "cancelled" : "error"));
    }
}
