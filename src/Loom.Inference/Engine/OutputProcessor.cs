namespace Loom.Inference.Engine;

/// <summary>
/// The engine's last verb: turns each step's sampled tokens into stream updates through each request's
/// <see cref="RequestOutput"/> (detokenizing, stop strings, finish reasons), ends the streams of finished, cancelled or
/// failed sequences, and counts prompt and generated tokens.
/// </summary>
/// <remarks>Called by the engine thread only; the counters may be read from any thread.</remarks>
/// <param name="scheduler">The scheduler that frees a finished sequence's blocks.</param>
public sealed class OutputProcessor(Scheduler scheduler)
{
    private readonly Scheduler scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
    private long promptTokens, generatedTokens;

    /// <summary>Prompt tokens of requests that sampled their first token.</summary>
    public long PromptTokens => Interlocked.Read(ref promptTokens);

    /// <summary>Tokens streamed to callers.</summary>
    public long GeneratedTokens => Interlocked.Read(ref generatedTokens);

    /// <summary>Streams the step's sampled tokens (already appended to their sequences by the scheduler) and retires finished sequences.</summary>
    public void Process(SchedulerOutput plan, ModelRunnerOutput output)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var (row, token, logProb) in output.Samples)
        {
            var s = plan.Rows[row].Sequence;
            // Counted at the first sampled token, once: a sequence preempted mid-prompt (chunked prefill)
            // samples its first token only after it was preempted, so "no preemption yet" cannot be the test.
            if (!s.PromptCounted)
            {
                s.PromptCounted = true;
                Interlocked.Add(ref promptTokens, s.Request.Prompt.Count);
            }
            var update = s.Output.Accept(token, logProb);
            if (update is not null && update.Tokens.Count > 0) Interlocked.Add(ref generatedTokens, update.Tokens.Count);
            if (s.Output.Finished is not null) Retire(s, null, update);
            else if (update is not null) s.Updates.Writer.TryWrite(update);
        }
    }

    /// <summary>Ends the streams of sequences the scheduler removed because their callers cancelled them.</summary>
    public void Cancelled(IReadOnlyList<EngineSequence> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        foreach (var s in sequences) Retire(s, null, s.Output.Cancel());
    }

    /// <summary>Removes a sequence from the scheduler, frees what it holds and ends its stream (with a last update or an error).</summary>
    public void Retire(EngineSequence sequence, Exception? error, GenerationUpdate? last = null)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.IsRetired) return;
        sequence.IsRetired = true;
        scheduler.Finish(sequence);
        sequence.DisposeState();
        if (error is not null) sequence.Updates.Writer.TryComplete(error);
        else
        {
            if (last is not null) sequence.Updates.Writer.TryWrite(last);
            sequence.Updates.Writer.TryComplete();
        }
    }
}
