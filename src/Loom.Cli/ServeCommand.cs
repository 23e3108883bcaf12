using System.ComponentModel;
using System.Runtime.InteropServices;
using Loom.Core;
using Loom.Data;
using Loom.Distributed;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Models.Parallelism;
using Loom.Serving;
using Loom.Training;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary><c>loom serve</c>.</summary>
public sealed class ServeCommand : Command<ServeCommand.Settings>
{
    /// <summary>Options of <c>loom serve</c>.</summary>
    public sealed class Settings : SpeculativeSettings
    {
        /// <summary>Listen address.</summary>
        [CommandOption("--host <ADDRESS>")]
        [Description("Address to listen on: 127.0.0.1 (default: this machine only), 0.0.0.0 (every interface), :: or localhost.")]
        public string Host { get; init; } = "127.0.0.1";

        /// <summary>Listen port.</summary>
        [CommandOption("--port <PORT>")]
        [Description("TCP port (default 8000; 0 picks a free one, printed at start).")]
        public int Port { get; init; } = 8000;

        /// <summary>API keys.</summary>
        [CommandOption("--api-key <KEY>")]
        [Description("Require 'Authorization: Bearer KEY' on every endpoint but /health (repeatable). Keys in LOOM_API_KEYS (comma-separated) count too.")]
        public string[] ApiKeys { get; init; } = [];

        /// <summary>Most waiting requests.</summary>
        [CommandOption("--max-queue <N>")]
        [Description("Most requests that may wait; more get HTTP 429 (default 256).")]
        public int MaxQueue { get; init; } = 256;

        /// <summary>KV-cache memory budget.</summary>
        [CommandOption("--kv-cache-mb <MB>")]
        [Description("Memory for the batching engine's paged KV cache in MiB (default: room for --max-running full contexts).")]
        public int? KvCacheMb { get; init; }

        /// <summary>Batch size.</summary>
        [CommandOption("--max-running <N>")]
        [Description("Most requests the batching engine runs in one step (default 64).")]
        public int MaxRunning { get; init; } = 64;

        /// <summary>Tokens per step.</summary>
        [CommandOption("--token-budget <N>")]
        [Description("Most tokens one engine step computes: decodes first, then prompt chunks (default 512).")]
        public int TokenBudget { get; init; } = 512;

        /// <summary>Engine.</summary>
        [CommandOption("--engine <ENGINE>")]
        [Description("batching (default: continuous batching) or sequential (one request at a time; the default with --speculative or --draft, which it alone supports).")]
        public string? Engine { get; init; }

        /// <summary>The engine <see cref="Engine"/> names, or its default.</summary>
        public string EngineName => Engine ?? (IsSpeculative ? "sequential" : "batching");

        /// <summary>Served model name.</summary>
        [CommandOption("--model-name <NAME>")]
        [Description("The name clients pass as \"model\" (default: the run or checkpoint folder's name).")]
        public string? ModelName { get; init; }

        /// <summary>Shutdown grace period.</summary>
        [CommandOption("--shutdown-timeout <SECONDS>")]
        [Description("On SIGTERM or Ctrl-C, how long running requests may finish before they are cut off (default 10).")]
        public double ShutdownTimeout { get; init; } = 10;

        /// <inheritdoc />
        public override Spectre.Console.ValidationResult Validate()
        {
            try
            {
                if (ServingEngineOptions.ParseKind(EngineName) != EngineKind.Sequential && IsSpeculative)
                    return Spectre.Console.ValidationResult.Error("speculative decoding runs on the sequential engine only (the batching engine does not speculate yet): use --engine sequential");
            }
            catch (ArgumentException e)
            {
                return Spectre.Console.ValidationResult.Error(e.Message);
            }
            if (MaxQueue <= 0) return Spectre.Console.ValidationResult.Error($"--max-queue {MaxQueue} must be positive");
            if (ShutdownTimeout < 0) return Spectre.Console.ValidationResult.Error($"--shutdown-timeout {ShutdownTimeout} must be 0 or more");
            return base.Validate();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var serverOptions = new ServerOptions
        {
            Host = settings.Host,
            Port = settings.Port,
            ApiKeys = [.. settings.ApiKeys, .. ServerOptions.ParseApiKeyList(Environment.GetEnvironmentVariable(ServerOptions.ApiKeysVariable))],
            ShutdownTimeout = TimeSpan.FromSeconds(settings.ShutdownTimeout),
            LogToConsole = true,
        };
        var engineOptions = new ServingEngineOptions
        {
            Kind = ServingEngineOptions.ParseKind(settings.EngineName),
            MaxQueue = settings.MaxQueue,
            Batching = new EngineOptions
            {
                MaxRunning = settings.MaxRunning, TokenBudget = settings.TokenBudget,
                KvCacheBytes = settings.KvCacheMb is int mb ? mb * 1024L * 1024 : null,
            },
        };
        if (settings.Threads is int threads) TorchSharp.torch.set_num_threads(threads);
        string checkpoint = TrainingCheckpoint.Resolve(settings.Checkpoint);
        var device = Devices.Resolve(settings.Device ?? "auto");
        var (model, manifest) = settings.LoadModel(checkpoint, device);
        GenerativeModels.Require(model, checkpoint);
        using (model)
        {
            var vocabulary = CheckpointVocabulary.Load(checkpoint, manifest);
            string name = settings.ModelName ?? DefaultModelName(checkpoint);
            if (LaunchEnvironment.Current() is { IsDistributed: true } launch)
            {
                if (settings.IsSpeculative)
                    throw new ConfigException("--speculative and --draft do not work with tensor-parallel serving (mpirun with more than one rank); serve speculatively from one process");
                return ServeTensorParallel(launch, model, vocabulary, name, device, engineOptions, serverOptions, cancellationToken);
            }
            var speculative = settings.LoadSpeculative(device);
            using var draft = speculative?.Draft;
            engineOptions = engineOptions with { Speculative = speculative };
            if (speculative is not null) Console.Error.WriteLine($"loom: speculative decoding with {speculative.Describe()}"); // stdout's first line stays the address
            using var engine = EngineFactory.Create(model, vocabulary, name, engineOptions);
            Serve(engine, serverOptions, engineOptions.Kind, cancellationToken).GetAwaiter().GetResult();
        }
        return 0;
    }

    /// <summary>
    /// <c>mpirun -n N loom serve</c>: the model split by heads and MLP units over the N ranks (Megatron's split, t5x's
    /// default rules). Rank 0 runs the HTTP server, the scheduler and sampling and broadcasts every step's input; the
    /// other ranks run each step on their shards until rank 0 stops.
    /// </summary>
    private static int ServeTensorParallel(LaunchEnvironment launch, LanguageModel model, IVocabulary vocabulary, string name, TorchSharp.torch.Device device,
        ServingEngineOptions engineOptions, ServerOptions serverOptions, CancellationToken cancellationToken)
    {
        if (engineOptions.Kind != EngineKind.Batching)
            throw new ArgumentException($"under {launch.Launcher} with {launch.WorldSize} ranks, loom serve splits the model over the ranks and runs the batching engine: drop --engine {engineOptions.Kind.ToString().ToLowerInvariant()}");
        using var group = Communicators.FromEnvironment(device);
        model.ShardForTensorParallel(group, PartitionRules.Default);
        var batching = engineOptions.Batching with { MaxQueue = engineOptions.MaxQueue };
        if (group.Rank != 0)
        {
            ContinuousBatchingEngine.ServeModelGroup(model, vocabulary, batching, group);
            return 0;
        }
        Console.WriteLine($"loom: tensor parallel over {group.WorldSize} ranks ({group.Backend}): heads and MLP units split, rank 0 serves");
        using var engine = new ContinuousBatchingEngine(model, vocabulary, name, batching, group);
        Serve(engine, serverOptions, engineOptions.Kind, cancellationToken).GetAwaiter().GetResult();
        return 0;
    }

    /// <summary>The run folder's name for a run's checkpoints/step_* folder, else the checkpoint folder's own name.</summary>
    internal static string DefaultModelName(string checkpointDirectory)
    {
        var folder = new DirectoryInfo(Path.TrimEndingDirectorySeparator(Path.GetFullPath(checkpointDirectory)));
        return folder.Parent is { Name: "checkpoints", Parent: { } run } ? run.Name : folder.Name;
    }

    /// <summary>Serves until SIGTERM, SIGINT (Ctrl-C) or <paramref name="cancellationToken"/>, then shuts down gracefully.</summary>
    private static async Task Serve(Loom.Inference.Engine.IGenerationEngine engine, ServerOptions options, EngineKind kind, CancellationToken cancellationToken)
    {
        await using var server = await LoomServer.StartAsync(engine, options, cancellationToken);
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnSignal(PosixSignalContext signal)
        {
            signal.Cancel = true; // we exit on our own, once running requests are done
            stop.TrySetResult();
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var cancelled = cancellationToken.Register(() => stop.TrySetResult());

        Console.WriteLine($"loom: serving model \"{engine.ModelName}\" ({kind.ToString().ToLowerInvariant()} engine, context {engine.ContextLength}) at {server.ApiBase}");
        Console.WriteLine($"loom: OpenAI base URL {server.ApiBase}; /health, /metrics; API key {(options.ApiKeys.Count > 0 ? "required" : "not required")}; Ctrl-C stops");
        await stop.Task;
        Console.WriteLine($"loom: shutting down: letting running requests finish (up to {options.ShutdownTimeout.TotalSeconds:0.#} s)");
        await server.StopAsync(CancellationToken.None);
        Console.WriteLine("loom: stopped");
    }
}
