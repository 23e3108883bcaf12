using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Models;
using Loom.Models.Kernels;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>decode-profile</c> benchmark.</summary>
internal sealed record DecodeProfileSettings
{
    public int Layers { get; init; } = 8;
    public int ModelDim { get; init; } = 512;
    public int Heads { get; init; } = 8;
    public int KvHeads { get; init; } = 8;
    public int MlpDim { get; init; } = 1376;
    public int PromptTokens { get; init; } = 32;
    public int Tokens { get; init; } = 128;
    public int Threads { get; init; } = 1;
    public int Repeats { get; init; } = 5;

    public const string Usage = """
        usage: loom-bench decode-profile [flags]

        Where one batch-1 decode step's time goes on the CPU: the step of a Llama-shaped decoder (serial blocks, RMSNorm,
        rotary, SwiGLU, untied byte vocabulary, f32) composed from Loom's own layers (RmsNorm, Attention, Mlp, Dense) over a
        preallocated KV cache, with a timestamp between phases. Per phase: milliseconds per token (median of the repeats) and
        tensors created per token (TorchSharp wrappers, each a native call and a disposal). Beside it: the same step's
        matmuls alone on the same weights (by Loom's kernel, which the layers run, and by libtorch's linear and mv) and
        the cost of one trivial op.

          --layers N          decoder layers (default 8)
          --dim N             model width (default 512)
          --heads N           query heads (default 8)
          --kv-heads N        key/value heads (default 8)
          --mlp N             SwiGLU hidden units (default 1376)
          --prompt N          prompt tokens (default 32)
          --tokens N          decode steps per repeat (default 128)
          --threads N         CPU threads (default 1)
          --repeats N         repeats, reported as the median (default 5)
        """;

    public static DecodeProfileSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new DecodeProfileSettings(), (s, flag) => flag.Name switch
    {
        "--layers" => s with { Layers = flag.PositiveInt() },
        "--dim" => s with { ModelDim = flag.PositiveInt() },
        "--heads" => s with { Heads = flag.PositiveInt() },
        "--kv-heads" => s with { KvHeads = flag.PositiveInt() },
        "--mlp" => s with { MlpDim = flag.PositiveInt() },
        "--prompt" => s with { PromptTokens = flag.PositiveInt() },
        "--tokens" => s with { Tokens = flag.PositiveInt() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--repeats" => s with { Repeats = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>decode-profile</c> benchmark: a decode step split into phases, each timed and its tensors counted.</summary>
internal static class DecodeProfileBenchmark
{
    private const int ByteVocabulary = 258;

    private static readonly string[] Phases =
        ["embed", "attention norm", "attention (projections, rotary, cache, SDPA, output)", "residual adds", "MLP norm", "MLP (SwiGLU)", "final norm + head", "argmax + item", "dispose scope"];

    private sealed record Layer(RmsNorm Norm, Attention Attention, RmsNorm MlpNorm, Mlp Mlp);

    public static string Run(DecodeProfileSettings s)
    {
        set_num_threads(s.Threads);
        int headDim = s.ModelDim / s.Heads, capacity = s.PromptTokens + s.Tokens + 1;
        using var random = new Generator(0);
        var rotary = new Rotary(headDim, capacity, 10_000);
        var layers = Enumerable.Range(0, s.Layers).Select(_ => new Layer(
            new RmsNorm(s.ModelDim, 1e-6), new Attention(s.ModelDim, s.Heads, s.KvHeads, headDim, false, rotary, null, random),
            new RmsNorm(s.ModelDim, 1e-6), new Mlp(s.ModelDim, s.MlpDim, MlpActivation.SwiGlu, false, null, random))).ToArray();
        foreach (var l in layers) { l.Attention.eval(); l.Mlp.eval(); }
        var embed = randn(ByteVocabulary, s.ModelDim, generator: random);                       // (V, D)
        var finalNorm = new RmsNorm(s.ModelDim, 1e-6);
        var head = new Dense(s.ModelDim, ByteVocabulary, false, null, random);                   // (V, D)

        var steps = new List<double[]>();
        var counts = new double[Phases.Length];
        var whole = new List<double>();
        for (int r = 0; r < s.Repeats + 1; r++) // the first repeat warms up
        {
            var (times, tensors, total) = Decode(s, layers, embed, finalNorm, head, capacity);
            if (r == 0) continue;
            steps.Add(times);
            whole.Add(total);
            counts = tensors;
        }
        var median = Enumerable.Range(0, Phases.Length).Select(p => Median(steps.Select(t => t[p]))).ToArray();
        double step = Median(whole);
        double matmuls = Median(Enumerable.Range(0, s.Repeats).Select(_ => MatmulFloor(s, layers, head, Matmul.Linear)));
        double vectors = Median(Enumerable.Range(0, s.Repeats).Select(_ => MatmulFloor(s, layers, head, Matmul.Vector)));
        double kernel = Median(Enumerable.Range(0, s.Repeats).Select(_ => MatmulFloor(s, layers, head, Matmul.LoomKernel)));
        double trivial = TrivialOp();

        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"## decode-profile: one batch-1 decode step by phase, {s.Threads} thread(s)"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {MachineInfo.LoadAverage():F2}; commit {MachineInfo.GitCommit()}"));
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- step: d {s.ModelDim}, {s.Layers} layers, {s.Heads} heads / {s.KvHeads} K/V, SwiGLU {s.MlpDim}, byte vocabulary, f32; prompt {s.PromptTokens}, {s.Tokens} steps, median of {s.Repeats}"));
        text.AppendLine();
        text.AppendLine("| phase | ms / token | share | tensors / token |");
        text.AppendLine("|---|---|---|---|");
        for (int p = 0; p < Phases.Length; p++)
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {Phases[p]} | {median[p]:F3} | {median[p] / step:P0} | {counts[p]:F0} |"));
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| **whole step** | **{step:F3}** | | **{counts.Sum():F0}** |"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"The step's {7 * s.Layers + 1} matmuls alone, same weights, same threads: {kernel:F3} ms / token by Loom's kernel (Float32Linear, what the layers above run), so everything else is {step - kernel:F3} ms; by libtorch's nn.functional.linear {matmuls:F3} ms, as matrix-vector products (mv) {vectors:F3} ms. One trivial op (a (1, 1, {s.ModelDim}) add in a dispose scope): {trivial * 1000:F1} µs."));
        return text.ToString();
    }

    /// <summary>One prefill then <see cref="DecodeProfileSettings.Tokens"/> timed decode steps; ms per token per phase, tensors per token per phase, ms per step.</summary>
    private static (double[] Times, double[] Tensors, double Total) Decode(DecodeProfileSettings s, Layer[] layers, Tensor embed, RmsNorm finalNorm, Dense head, int capacity)
    {
        var ticks = new long[Phases.Length];
        var tensors = new long[Phases.Length];
        using var cache = new KvCache(new KvCacheShape(s.Layers, s.KvHeads, s.ModelDim / s.Heads), 1, capacity);
        using var noGrad = no_grad();
        long token = 1;
        // The prefill, through the same layers (untimed).
        using (var scope = NewDisposeScope())
        {
            var prompt = arange(s.PromptTokens, dtype: int64).unsqueeze(0); // (1, P)
            using var model = new ComposedModel(layers, embed, finalNorm, head);
            var logits = cache.Run(model, prompt);
            token = logits[0, -1].argmax().item<long>();
        }
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < s.Tokens; i++)
        {
            using var model = new ComposedModel(layers, embed, finalNorm, head, ticks, tensors);
            long t0 = Stopwatch.GetTimestamp(), n0;
            using (var scope = NewDisposeScope())
            {
                model.Scope = scope;
                var input = tensor(new[] { token }).unsqueeze(0); // (1, 1)
                var logits = cache.Run(model, input);             // (1, 1, V)
                long t = Stopwatch.GetTimestamp();
                n0 = scope.DisposablesCount;
                token = logits[0, -1].argmax().item<long>();
                tensors[7] += scope.DisposablesCount - n0;
                ticks[7] += Stopwatch.GetTimestamp() - t;
                t0 = Stopwatch.GetTimestamp();
            }
            ticks[8] += Stopwatch.GetTimestamp() - t0;
        }
        double total = (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency / s.Tokens;
        return (ticks.Select(t => t * 1000.0 / Stopwatch.Frequency / s.Tokens).ToArray(), tensors.Select(n => (double)n / s.Tokens).ToArray(), total);
    }

    /// <summary>The step's matmuls alone: per layer Q, K, V, O, gate, up, down, then the head, on a (1, 1, D) input.</summary>
    private enum Matmul { Linear, Vector, LoomKernel }

    private static double MatmulFloor(DecodeProfileSettings s, Layer[] layers, Dense head, Matmul how)
    {
        using var noGrad = no_grad();
        var kernels = new List<Tensor>();
        foreach (var l in layers)
        {
            kernels.AddRange(l.Attention.parameters());
            kernels.AddRange(l.Mlp.parameters());
        }
        kernels.AddRange(head.parameters());
        var byWidth = kernels.Select(w => (W: w, X: zeros(1, 1, w.shape[1]))).ToArray();
        long start = 0;
        for (int i = -8; i < s.Tokens; i++)
        {
            if (i == 0) start = Stopwatch.GetTimestamp();
            using var scope = NewDisposeScope();
            foreach (var (w, x) in byWidth)
                _ = how switch
                {
                    Matmul.Vector => w.mv(x.view(-1)),
                    Matmul.LoomKernel => Float32Linear.DirectLinear(x, w),
                    _ => nn.functional.linear(x, w),
                };
        }
        return (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency / s.Tokens;
    }

    /// <summary>Milliseconds for one (1, 1, D) add inside a dispose scope, averaged over many.</summary>
    private static double TrivialOp()
    {
        using var a = ones(1, 1, 512);
        using var b = ones(1, 1, 512);
        const int n = 20_000;
        long start = 0;
        for (int i = -1000; i < n; i++)
        {
            if (i == 0) start = Stopwatch.GetTimestamp();
            using var scope = NewDisposeScope();
            _ = a + b;
        }
        return (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency / n;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>
    /// DecoderLm's serial-block step written out from the same layers, with a timestamp and a tensor count between
    /// phases (the model's own forward has no hooks). Not a component owner: disposing it disposes nothing.
    /// </summary>
    private sealed class ComposedModel(Layer[] layers, Tensor embed, RmsNorm finalNorm, Dense head, long[]? ticks = null, long[]? tensors = null) : LanguageModel(nameof(ComposedModel))
    {
        public override ModelOptions Options => throw new NotSupportedException();

        public override KvCacheShape KvCacheShape => throw new NotSupportedException();

        /// <summary>The step's dispose scope, whose count of tensors the phases read.</summary>
        public TorchSharp.DisposeScope? Scope { get; set; }

        public override long ActiveParameterCount => 0;

        public override double FlopsPerToken(int sequenceLength) => 0;

        public override Tensor Forward(Tensor tokens, IAttentionContext? attention)
        {
            long t = Stopwatch.GetTimestamp();
            long n = Scope?.DisposablesCount ?? 0;
            void Mark(int phase)
            {
                long now = Stopwatch.GetTimestamp(), count = Scope?.DisposablesCount ?? 0;
                if (ticks is not null) ticks[phase] += now - t;
                if (tensors is not null) tensors[phase] += count - n;
                (t, n) = (Stopwatch.GetTimestamp(), count);
            }
            long b = tokens.shape[0], len = tokens.shape[1];
            var x = embed.index_select(0, tokens.reshape(-1)).view(b, len, -1); // (B, T, D)
            Mark(0);
            for (int l = 0; l < layers.Length; l++)
            {
                var h = layers[l].Norm.forward(x);                          // (B, T, D)
                Mark(1);
                var a = layers[l].Attention.Forward(h, l, attention);        // (B, T, D)
                Mark(2);
                x = x + a;
                Mark(3);
                h = layers[l].MlpNorm.forward(x);
                Mark(4);
                var m = layers[l].Mlp.forward(h);                            // (B, T, D)
                Mark(5);
                x = x + m;
                Mark(3);
            }
            var logits = head.forward(finalNorm.forward(x));                 // (B, T, V)
            Mark(6);
            return logits;
        }

        public override ModelOutput Forward(Loom.Data.FeatureBatch features) => throw new NotSupportedException();

        protected override void Dispose(bool disposing) { } // the layers belong to the benchmark
    }
}
