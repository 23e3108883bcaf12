using System.Threading.Channels;
using Loom.Inference.Paging;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// One request inside <see cref="ContinuousBatchingEngine"/>: its tokens, its KV blocks, its sampler and its output.
/// The <see cref="Scheduler"/> moves it between queues and appends to its block table, the <see cref="ModelRunner"/>
/// reads its tokens and blocks (and keeps its encoder memory or image soft tokens), the <see cref="OutputProcessor"/>
/// streams its updates. Everything but cancellation (<see cref="Scheduler.Cancel"/>) is touched on the engine thread only.
/// </summary>
public sealed class EngineSequence
{
    private int cancelled;

    internal EngineSequence(long id, GenerationRequest request, RequestOutput output, RequestSampler sampler, BlockTable table, int[] decoderPrefix)
    {
        Id = id;
        Request = request;
        Output = output;
        Sampler = sampler;
        Table = table;
        tokens = [.. decoderPrefix];
    }

    private readonly List<int> tokens;

    /// <summary>The engine's number for the request, in arrival order.</summary>
    public long Id { get; }

    /// <summary>The request.</summary>
    public GenerationRequest Request { get; }

    /// <summary>Its detokenizer, stop strings and finish reason.</summary>
    public RequestOutput Output { get; }

    /// <summary>Its sampling state (generator, penalties' counts, output constraint).</summary>
    public RequestSampler Sampler { get; }

    /// <summary>Its KV-cache blocks.</summary>
    public BlockTable Table { get; }

    /// <summary>The decoder's tokens: the prompt (decoder-only) or the start token (encoder-decoder), then the output.</summary>
    public IReadOnlyList<int> Tokens => tokens;

    /// <summary>Tokens whose keys and values are in the cache.</summary>
    public int Computed { get; internal set; }

    /// <summary>Times the sequence was preempted.</summary>
    public int Preemptions { get; internal set; }

    /// <summary>Whether it has computed all it knows and waits for a sampled token (the next step decodes it).</summary>
    public bool IsDecoding => Computed == tokens.Count - 1;

    /// <summary>Whether its caller cancelled it.</summary>
    public bool IsCancelled => Volatile.Read(ref cancelled) == 1;

    /// <summary>An encoder-decoder request's cross-attention keys and values, from its first step to its end (kept across preemption).</summary>
    internal EncoderMemory? Memory { get; set; }

    /// <summary>A request's images as soft tokens, (M·K, D), from the first step that reaches them to its end (kept across preemption).</summary>
    internal Tensor? SoftTokens { get; set; }

    /// <summary>How many image placeholder ids precede each prompt position (length prompt + 1); null without images.</summary>
    internal int[]? PlaceholdersBefore { get; init; }

    /// <summary>Whether the prompt's tokens were added to the engine's prompt-token total.</summary>
    internal bool PromptCounted { get; set; }

    /// <summary>Where it sits in the scheduler's waiting queue (null when it does not wait), for O(1) removal.</summary>
    internal LinkedListNode<EngineSequence>? WaitingNode { get; set; }

    /// <summary>Whether it is in the scheduler's running list.</summary>
    internal bool IsRunning { get; set; }

    /// <summary>Whether its stream has ended (it finished, failed or was cancelled).</summary>
    internal bool IsRetired { get; set; }

    internal Channel<GenerationUpdate> Updates { get; } = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    internal void Append(int token) => tokens.Add(token);

    /// <summary>Image placeholder ids among the tokens [start, start + count) (only the prompt's count).</summary>
    internal int ImagePositions(int start, int count)
    {
        if (PlaceholdersBefore is not { } before) return 0;
        int end = Math.Min(start + count, before.Length - 1);
        return start >= end ? 0 : before[end] - before[start];
    }

    /// <summary>Marks the sequence cancelled (any thread); returns true the first time.</summary>
    internal bool TryCancel() => Interlocked.Exchange(ref cancelled, 1) == 0 && !Updates.Reader.Completion.IsCompleted;

    /// <summary>Frees what the sequence holds besides its blocks: the sampler, encoder memory and soft tokens.</summary>
    internal void DisposeState()
    {
        Sampler.Dispose();
        Memory?.Dispose();
        Memory = null;
        SoftTokens?.Dispose();
        SoftTokens = null;
    }
}
