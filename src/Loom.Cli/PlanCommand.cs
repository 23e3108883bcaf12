using System.ComponentModel;
using System.Globalization;
using Loom.Core;
using Loom.Models;
using Loom.Planning;
using Spectre.Console.Cli;

namespace Loom.Cli;

/// <summary>
/// <c>loom plan</c>: the analytical inference cost model of Pope et al. (2022). Ranks the partitioning layouts
/// for prefill and decode of a model on a number of accelerators and prints the chatbot-style end-to-end time.
/// </summary>
public sealed class PlanCommand : Command<PlanCommand.Settings>
{
    /// <summary>The options of <c>loom plan</c>. The defaults are the paper's chatbot example: PaLM 540B on 64 TPU v4 with int8 weights.</summary>
    public sealed class Settings : CommandSettings
    {
        /// <summary>Model: a built-in shape or a Loom preset.</summary>
        [CommandOption("-m|--model <NAME>")]
        [Description("Built-in shape (palm-540b, palm-62b, palm-8b, llama3-70b) or a Loom decoder preset / JSON file. Default: palm-540b.")]
        public string Model { get; init; } = "palm-540b";

        /// <summary>Model overrides.</summary>
        [CommandOption("--set <KEY=VALUE>")]
        [Description("Override a model option of a preset, e.g. --set num_layers=64 or --set model.num_kv_heads=8 (repeatable).")]
        public string[] Set { get; init; } = [];

        /// <summary>Accelerator.</summary>
        [CommandOption("--hardware <NAME>")]
        [Description("tpu-v4, tpu-v5e, tpu-v5p, h100 or h200. Default: tpu-v4.")]
        public string Hardware { get; init; } = "tpu-v4";

        /// <summary>Number of chips.</summary>
        [CommandOption("--chips <N>")]
        [Description("Chips: a power of two for TPUs (a torus slice), 1, 2, 4 or a multiple of 8 GPUs. Default: 64.")]
        public int Chips { get; init; } = 64;

        /// <summary>Batch size.</summary>
        [CommandOption("--batch <N>")]
        [Description("Sequences served together. Default: 64.")]
        public int Batch { get; init; } = 64;

        /// <summary>Cached context tokens.</summary>
        [CommandOption("--context <N>")]
        [Description("Tokens per sequence already in the KV cache (earlier turns). Default: 1920.")]
        public long Context { get; init; } = 1920;

        /// <summary>Input tokens.</summary>
        [CommandOption("--input <N>")]
        [Description("New input tokens per sequence, prefilled in one pass. Default: 64.")]
        public int Input { get; init; } = 64;

        /// <summary>Generated tokens.</summary>
        [CommandOption("--generate <N>")]
        [Description("Tokens generated per sequence, one decode step each. Default: 64.")]
        public int Generate { get; init; } = 64;

        /// <summary>Weight format.</summary>
        [CommandOption("--weights <FORMAT>")]
        [Description("bf16 or int8 (weight-only quantization; matmuls stay bf16). Default: int8.")]
        public string Weights { get; init; } = "int8";

        /// <summary>KV-cache format.</summary>
        [CommandOption("--kv-cache <FORMAT>")]
        [Description("bf16 or int8. Default: bf16.")]
        public string KvCache { get; init; } = "bf16";

        /// <summary>One layout for both phases.</summary>
        [CommandOption("--layout <LAYOUT>")]
        [Description("Cost only this layout for both phases (ws1d, ws2d, wg-x, wg-xy, wg-xyz; /batch or /heads for attention); an impossible one is an error.")]
        public string? Layout { get; init; }

        /// <summary>Pareto plot.</summary>
        [CommandOption("--plot <FILE.png>")]
        [Description("Write the latency–MFU Pareto frontiers over layouts and batch sizes 1..--max-batch (the paper's Figure 1) as a PNG.")]
        public string? Plot { get; init; }

        /// <summary>Largest batch of the plot's sweep.</summary>
        [CommandOption("--max-batch <N>")]
        [Description("Largest batch size the --plot sweep tries (powers of two). Default: 1024.")]
        public int MaxBatch { get; init; } = 1024;

        /// <summary>Achievable fraction of peak FLOP/s.</summary>
        [CommandOption("--flops-efficiency <F>")]
        [Description("Fraction of peak FLOP/s the matmuls reach, in (0, 1]. Default: 1 (the roofline).")]
        public double FlopsEfficiency { get; init; } = 1;

        /// <summary>Achievable fraction of HBM bandwidth.</summary>
        [CommandOption("--memory-efficiency <F>")]
        [Description("Fraction of peak HBM bandwidth reached, in (0, 1]. Default: 1.")]
        public double MemoryEfficiency { get; init; } = 1;

        /// <summary>Per-axis torus bandwidth.</summary>
        [CommandOption("--axis-bandwidth")]
        [Description("Give a torus collective only the links of the axes it spans, instead of the paper's single per-chip network bandwidth.")]
        public bool AxisBandwidth { get; init; }

        /// <summary>Overlap communication.</summary>
        [CommandOption("--overlap")]
        [Description("Assume communication overlaps compute and memory (latency = max of the three) instead of adding to them.")]
        public bool Overlap { get; init; }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ModelShape shape = ResolveModel(settings.Model, settings.Set);
        HardwareSpec hardware = HardwareCatalog.Get(settings.Hardware);
        Topology topology = hardware.TopologyFor(settings.Chips) with { UniformBandwidth = !settings.AxisBandwidth };
        var request = new ServingRequest(settings.Batch, settings.Context, settings.Input, settings.Generate).Validate();
        if (settings.MaxBatch <= 0) throw new ArgumentException($"--max-batch {settings.MaxBatch} must be a positive integer");
        var model = new InferenceCostModel(new CostModelOptions(shape, topology)
        {
            Weights = ParseFormat(settings.Weights, "--weights") == 1 ? WeightFormat.Int8 : WeightFormat.Bf16,
            KvCacheBytes = ParseFormat(settings.KvCache, "--kv-cache"),
            FlopsEfficiency = Efficiency(settings.FlopsEfficiency, "--flops-efficiency"),
            MemoryEfficiency = Efficiency(settings.MemoryEfficiency, "--memory-efficiency"),
            OverlapCommunication = settings.Overlap,
        });

        Console.WriteLine(Invariant($"{shape.Name}: {shape.StoredParameters / 1e9:F1}B parameters, {shape.Layers} layers, d_model {shape.ModelDim}, {shape.Heads} heads x {shape.HeadDim} ({(shape.KvHeads == 1 ? "multi-query" : $"{shape.KvHeads} kv heads")}), d_ff {shape.FfDim}{(shape.GatedMlp ? " gated" : "")}, {(shape.ParallelBlock ? "parallel" : "serial")} blocks"));
        Console.WriteLine(Invariant($"{settings.Chips} x {hardware.Name} ({topology.Shape}): {hardware.PeakBf16 / 1e12:F0} TFLOP/s bf16, {hardware.HbmBandwidth / 1e9:F0} GB/s HBM, {hardware.HbmCapacity / 1e9:F1} GB each; weights {settings.Weights}, KV cache {settings.KvCache}"));
        Console.WriteLine(Invariant($"batch {request.Batch}, context {request.Context}, input {request.Input}, generate {request.Generate}; latency = {(settings.Overlap ? "max(compute, memory, communication)" : "max(compute, weight + KV load) + communication")}"));

        if (settings.Layout is not null)
        {
            Layout layout = Planning.Layout.Parse(settings.Layout);
            ServingCost cost = ServingPlanner.Cost(model, request, layout, layout);
            if (!cost.Feasible) throw new ArgumentException($"layout {layout.Name} is impossible here: {cost.Reason}");
            PrintTable("prefill", [cost.Prefill]);
            if (cost.FirstDecode is not null) PrintTable("decode (first step)", [cost.FirstDecode]);
            PrintTotal(cost);
        }
        else
        {
            PrintTable("prefill", model.Rank(request.Prefill));
            if (request.Generate > 0) PrintTable("decode (first step)", model.Rank(request.Decode(0)));
            ServingCost? best = ServingPlanner.Best(model, request);
            if (best is null || !best.Feasible)
                Console.WriteLine($"end to end: no layout fits{(best?.Reason is string r ? $" ({r})" : "")}");
            else PrintTotal(best);
        }

        if (settings.Plot is not null)
        {
            var prefill = ParetoFrontier.Sweep(model, b => new InferencePass(b, request.Input, request.Context), settings.MaxBatch);
            var decode = ParetoFrontier.Sweep(model, b => new InferencePass(b, 1, request.Context + request.Input), settings.MaxBatch);
            ParetoPlot.Save(settings.Plot, $"{shape.Name} on {settings.Chips} {hardware.Name}, {settings.Weights} weights", prefill, decode);
            Console.WriteLine($"plot: {settings.Plot}");
        }
        return 0;
    }

    private static void PrintTable(string phase, IReadOnlyList<PassCost> costs)
    {
        Console.WriteLine();
        Console.WriteLine($"{phase}:");
        Console.WriteLine($"  {"layout",-13} {"mesh",-24} {"latency",10} {"MFU",6} {"compute",10} {"weights",10} {"KV load",10} {"comms",10}");
        foreach (PassCost c in costs)
        {
            if (c.Feasible)
                Console.WriteLine(Invariant($"  {c.Layout.Name,-13} {c.Mesh,-24} {Time(c.LatencySeconds),10} {c.Mfu * 100,5:F1}% {Time(c.ComputeSeconds),10} {Time(c.WeightLoadSeconds),10} {Time(c.KvLoadSeconds),10} {Time(c.CommunicationSeconds),10}"));
            else
                Console.WriteLine($"  {c.Layout.Name,-13} infeasible: {c.Reason}");
        }
    }

    private static void PrintTotal(ServingCost cost)
    {
        Console.WriteLine();
        string decode = cost.FirstDecode is null ? "nothing generated"
            : Invariant($"decode {cost.FirstDecode.Layout.Name} {Time(cost.DecodeSeconds)} ({Time(cost.FirstDecode.LatencySeconds)} per token at first)");
        Console.WriteLine(Invariant($"end to end: {Time(cost.TotalSeconds)} = prefill {cost.Prefill.Layout.Name} {Time(cost.Prefill.LatencySeconds)} + {decode}"));
    }

    private static string Time(double seconds) =>
        seconds >= 1 ? Invariant($"{seconds:F3} s") : seconds >= 1e-3 ? Invariant($"{seconds * 1e3:F2} ms") : Invariant($"{seconds * 1e6:F2} us");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static int ParseFormat(string value, string option) => value.Trim().ToLowerInvariant() switch
    {
        "bf16" => 2,
        "int8" => 1,
        _ => throw new ArgumentException($"{option} '{value}': use bf16 or int8"),
    };

    private static double Efficiency(double value, string option) =>
        value > 0 && value <= 1 ? value : throw new ArgumentException($"{option} {value.ToString(CultureInfo.InvariantCulture)} must be in (0, 1]");

    /// <summary>
    /// The shape of <paramref name="name"/>: a built-in shape when there are no overrides, else a Loom
    /// decoder preset with <paramref name="sets"/> applied to its model options.
    /// </summary>
    /// <exception cref="ConfigException">No such preset, a bad override, or a model the cost model does not cover.</exception>
    internal static ModelShape ResolveModel(string name, IReadOnlyList<string> sets)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (sets.Count == 0 && ModelShape.BuiltIn.TryGetValue(name, out ModelShape? builtIn)) return builtIn;
        var config = new LayeredConfig().Merge(ModelArchitectures.WithDefaultArchitecture(LayeredConfig.ReadFile(ModelPresets.Resolve(name))));
        foreach (string set in sets) config.Set(set.StartsWith("model.", StringComparison.Ordinal) ? set["model.".Length..] : set);
        ModelOptions options;
        try
        {
            options = config.Bind<ModelOptions>().Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(e.Message, e);
        }
        if (options.DenseDecoder is not { } d)
            throw new ConfigException($"loom plan costs dense decoder-only language models; '{name}' is a {options.Architecture} model{(options.Architecture == "decoder_lm" ? " with mixture-of-experts layers" : "")}");
        try
        {
            return new ModelShape(Path.GetFileNameWithoutExtension(name), d.NumLayers, d.ModelDim, d.NumHeads, d.NumKvHeads, d.HeadDim, d.MlpDim, d.VocabSize,
                d.ParallelBlock, gatedMlp: d.GatedMlp, d.SharedEmbeddings);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(e.Message, e);
        }
    }
}
