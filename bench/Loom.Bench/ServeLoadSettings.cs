using System.Globalization;
using Loom.Serving;

namespace Loom.Bench;

/// <summary>Flags of the <c>serve-load</c> benchmark.</summary>
internal sealed record ServeLoadSettings
{
    /// <summary>Concurrent clients; one load run per entry (a sweep).</summary>
    public IReadOnlyList<int> Clients { get; init; } = [64];

    /// <summary>Requests each client sends, one after the other (a closed loop: the load is bounded by the clients).</summary>
    public int RequestsPerClient { get; init; } = 2;

    public int PromptTokens { get; init; } = 32;
    public int OutputTokens { get; init; } = 64;

    /// <summary>The engines compared, in order; the first is the baseline of the ratio.</summary>
    public IReadOnlyList<EngineKind> Engines { get; init; } = [EngineKind.Sequential, EngineKind.Batching];

    public string Preset { get; init; } = "tiny";

    /// <summary>A run or checkpoint folder to serve instead of a preset with random weights.</summary>
    public string? Checkpoint { get; init; }
    public string Device { get; init; } = "cpu";
    public int? Threads { get; init; }
    public long Seed { get; init; } = 1234;

    public const string Usage = """
        usage: loom-bench serve-load [flags]

        Starts the OpenAI-compatible server (Loom.Serving, Kestrel) in this process on 127.0.0.1, once per
        engine, and drives it with a bounded load: N concurrent clients, each streaming its requests one
        after the other over HTTP (/v1/completions, fixed prompt and output lengths, ignore_eos). Reports
        output tokens/s, time to first token and inter-token latency (p50, p99) as the clients measure them,
        per engine and client count, and continuous batching's throughput over one-request-at-a-time.

          --clients LIST          concurrent clients, e.g. 64 (default) or a sweep 1,16,64
          --requests-per-client N requests each client sends (default 2)
          --prompt-tokens N       prompt length in tokens (default 32)
          --output-tokens N       tokens generated per request (default 64; EOS ignored)
          --engines LIST          engines in order, the first is the baseline: sequential,batching (default)
          --preset NAME           model preset with random weights (default tiny: 1.6M parameters, bytes)
          --checkpoint DIR        serve this run or checkpoint folder (its weights and vocabulary) instead
          --device D              cpu (default), cuda, cuda:N or auto
          --threads N             libtorch intra-op threads (default: libtorch's choice)
          --seed N                model weights and prompts (default 1234)
        """;

    /// <summary>Parses flags; throws <see cref="ArgumentException"/> with a message that names the bad flag.</summary>
    public static ServeLoadSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new ServeLoadSettings(), (s, flag) => flag.Name switch
    {
        "--clients" => s with { Clients = flag.PositiveInts() },
        "--requests-per-client" => s with { RequestsPerClient = flag.PositiveInt() },
        "--prompt-tokens" => s with { PromptTokens = flag.PositiveInt() },
        "--output-tokens" => s with { OutputTokens = flag.PositiveInt() },
        "--engines" => s with { Engines = [.. flag.Value().Split(',', StringSplitOptions.TrimEntries).Select(ServingEngineOptions.ParseKind)] },
        "--preset" => s with { Preset = flag.Value() },
        "--checkpoint" => s with { Checkpoint = flag.Value() },
        "--device" => s with { Device = flag.Value() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--seed" => s with { Seed = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}
