using System.Collections.Concurrent;

namespace Loom.Inference.Engine;

/// <summary>
/// The engine's scheduler (vLLM v1's): owns the waiting queue and the running list, appends each step's tokens to the
/// sequences' block tables, preempts when blocks run out, shares cached prompt prefixes and splits long prompts into
/// chunks. Each step, <see cref="Schedule"/> produces a <see cref="SchedulerOutput"/> under one token budget (decodes
/// first, then prompt chunks, then new sequences), and <see cref="Update"/> applies the <see cref="ModelRunnerOutput"/>.
/// </summary>
/// <remarks>
/// <see cref="Submit"/>, <see cref="Cancel"/> and the counters may be called from any thread; everything else is called
/// by the engine thread only. Cancellation costs O(1) per cancelled request (each waiting sequence knows its queue
/// node), so a step never walks the waiting queue: with 20,000 requests queued a step costs what it costs with 20.
/// </remarks>
public sealed class Scheduler
{
    private readonly EngineOptions options;
    private readonly ConcurrentQueue<EngineSequence> arrivals = new();
    private readonly ConcurrentQueue<EngineSequence> cancellations = new();
    private readonly LinkedList<EngineSequence> waiting = new(); // engine thread only
    private readonly List<EngineSequence> running = [];          // engine thread only, in admission order
    private int waitingCount;
    private long preemptions, prefixHitTokens;

    /// <summary>Creates a scheduler with the engine's batch, budget and queue limits.</summary>
    /// <param name="options">The engine's options (token budget, max running, max queue).</param>
    public Scheduler(EngineOptions options) => this.options = options ?? throw new ArgumentNullException(nameof(options));

    /// <summary>Requests submitted and not yet running (any thread).</summary>
    public int WaitingCount => Volatile.Read(ref waitingCount);

    /// <summary>Sequences being prefilled or decoded, in admission order (engine thread).</summary>
    public IReadOnlyList<EngineSequence> Running => running;

    /// <summary>Whether there is nothing to do: nothing runs, waits or arrived (engine thread).</summary>
    public bool IsIdle => running.Count == 0 && waiting.Count == 0 && arrivals.IsEmpty;

    /// <summary>Times a running sequence was preempted since the scheduler was created (any thread).</summary>
    public long Preemptions => Interlocked.Read(ref preemptions);

    /// <summary>Prompt tokens whose keys and values came from the prefix cache (any thread).</summary>
    public long PrefixHitTokens => Interlocked.Read(ref prefixHitTokens);

    /// <summary>Queues a sequence (any thread) unless <see cref="EngineOptions.MaxQueue"/> are already waiting.</summary>
    /// <returns>False when the queue is full (nothing was queued).</returns>
    public bool Submit(EngineSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (Interlocked.Increment(ref waitingCount) > options.MaxQueue)
        {
            Interlocked.Decrement(ref waitingCount);
            return false;
        }
        arrivals.Enqueue(sequence);
        return true;
    }

    /// <summary>Asks to remove a sequence its caller cancelled (any thread); <see cref="TakeCancelled"/> removes it.</summary>
    /// <returns>True the first time, while the sequence has not ended.</returns>
    public bool Cancel(EngineSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (!sequence.TryCancel()) return false;
        cancellations.Enqueue(sequence);
        return true;
    }

    /// <summary>
    /// Moves arrivals into the waiting queue, then removes the sequences cancelled since the last call (freeing the blocks of
    /// running ones) and returns them, for the output processor to end their streams. O(arrivals + cancellations).
    /// </summary>
    public IReadOnlyList<EngineSequence> TakeCancelled()
    {
        while (arrivals.TryDequeue(out var s)) s.WaitingNode = waiting.AddLast(s);
        if (cancellations.IsEmpty) return [];
        var removed = new List<EngineSequence>();
        while (cancellations.TryDequeue(out var s))
        {
            if (s.IsRetired) continue;
            if (s.WaitingNode is { } node)
            {
                waiting.Remove(node);
                s.WaitingNode = null;
                Interlocked.Decrement(ref waitingCount);
            }
            else if (s.IsRunning) Finish(s);
            else continue; // ended already
            removed.Add(s);
        }
        return removed;
    }

    /// <summary>Removes every sequence, running and waiting (arrivals too), for an engine that stops.</summary>
    public (IReadOnlyList<EngineSequence> Running, IReadOnlyList<EngineSequence> Waiting) Drain()
    {
        while (arrivals.TryDequeue(out var a)) a.WaitingNode = waiting.AddLast(a);
        var wasRunning = running.ToList();
        foreach (var s in wasRunning) Finish(s);
        var wasWaiting = waiting.ToList();
        foreach (var s in wasWaiting) s.WaitingNode = null;
        waiting.Clear();
        Volatile.Write(ref waitingCount, 0);
        return (wasRunning, wasWaiting);
    }

    /// <summary>
    /// Decides this step's work: one decode token for every running sequence that has sampled all it
    /// knows (preempting the newest when blocks run out), then prompt chunks for sequences being
    /// prefilled, then new sequences from the queue, until the token budget or the batch is full.
    /// </summary>
    public SchedulerOutput Schedule()
    {
        var rows = new List<ScheduledRow>();
        var scheduled = new HashSet<EngineSequence>();
        int budget = options.TokenBudget;
        foreach (var s in running.ToList())
        {
            if (!s.IsRunning || !s.IsDecoding || budget == 0) continue;
            while (!s.Table.TryAppend([s.Tokens[^1]]))
            {
                var victim = running[^1];
                Preempt(victim);
                if (victim == s) break;
            }
            if (!s.IsRunning) continue;
            rows.Add(new ScheduledRow(s, s.Computed, 1));
            scheduled.Add(s);
            budget--;
        }
        foreach (var s in running)
        {
            if (budget == 0 || s.Computed >= s.Tokens.Count - 1 || scheduled.Contains(s)) continue;
            if (TryPrefill(s, ref budget) is { } row) rows.Add(row);
        }
        while (budget > 0 && running.Count < options.MaxRunning && waiting.First is { } node)
        {
            var s = node.Value;
            if (TryPrefill(s, ref budget) is not { } row) break; // no blocks: wait for running ones to finish
            waiting.RemoveFirst();
            s.WaitingNode = null;
            Interlocked.Decrement(ref waitingCount);
            running.Add(s);
            s.IsRunning = true;
            rows.Add(row);
        }
        return new SchedulerOutput(rows);
    }

    /// <summary>Applies a step's result: every row's tokens are now cached, and each sampled token joins its sequence.</summary>
    public void Update(SchedulerOutput plan, ModelRunnerOutput output)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var row in plan.Rows) row.Sequence.Computed = row.Start + row.Count;
        foreach (var sample in output.Samples) plan.Rows[sample.Row].Sequence.Append(sample.Token);
    }

    /// <summary>Frees the newest running sequence's blocks and requeues it, when every running one is stuck for lack of blocks.</summary>
    public void PreemptNewest()
    {
        if (running.Count > 0) Preempt(running[^1]);
    }

    /// <summary>Removes a running sequence that finished or failed and frees its blocks.</summary>
    public void Finish(EngineSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.IsRunning)
        {
            running.Remove(sequence);
            sequence.IsRunning = false;
        }
        sequence.Table.Release();
    }

    /// <summary>Appends the next prompt chunk of <paramref name="s"/> to its table (sharing cached prefix blocks) and returns its row.</summary>
    private ScheduledRow? TryPrefill(EngineSequence s, ref int budget)
    {
        int from = s.Table.TokenCount;
        int take = Math.Min(s.Tokens.Count - from, budget);
        if (take <= 0) return null;
        bool firstChunk = from == 0;
        if (!s.Table.TryAppend(s.Tokens.Skip(from).Take(take).ToArray())) return null;
        if (firstChunk && s.Table.CachedTokenCount > 0)
        {
            s.Computed = s.Table.CachedTokenCount; // those keys and values are already in the cache
            Interlocked.Add(ref prefixHitTokens, s.Table.CachedTokenCount);
        }
        int start = s.Computed;
        int count = s.Table.TokenCount - start;
        budget -= count;
        return new ScheduledRow(s, start, count);
    }

    /// <summary>Frees a sequence's blocks and puts it back at the front of the queue; it will recompute prompt and output so far.</summary>
    private void Preempt(EngineSequence s)
    {
        running.Remove(s);
        s.IsRunning = false;
        s.Table.Release();
        s.Computed = 0;
        s.Preemptions++;
        Interlocked.Increment(ref preemptions);
        s.WaitingNode = waiting.AddFirst(s);
        Interlocked.Increment(ref waitingCount);
    }
}
