using System.Diagnostics;
using System.Globalization;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using Loom.Inference;
using Loom.Models;
using Loom.Models.Interop;
using Loom.Models.Quantization;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>decode</c> benchmark.</summary>
internal sealed record DecodeSettings
{
    public int Layers { get; init; } = 8;
    public int ModelDim { get; init; } = 512;
    public int Heads { get; init; } = 8;
    public int KvHeads { get; init; } = 8;
    public int MlpDim { get; init; } = 1376;
    public int PromptTokens { get; init; } = 32;
    public int Tokens { get; init; } = 128;
    public int Threads { get; init; } = 1;
    public int Runs { get; init; } = 3;

    public const string Usage = """
        usage: loom-bench decode [flags]

        Batch-1 greedy decoding on the CPU, Loom against llama.cpp (LLamaSharp 0.30.0) on the same weights in one run: a
        random-initialised Llama-shaped Loom model over the byte vocabulary, exported to GGUF f32 (and quantized to q8_0
        by llama.cpp's own quantizer), decoded from the same prompt with the same threads. Loom f32 against llama.cpp f32,
        and Loom int8 (per-channel weights) against llama.cpp q8_0. Tokens/s counts the decode steps after the prompt.

          --layers N          decoder layers (default 8)
          --dim N             model width (default 512)
          --heads N           query heads (default 8; head width dim / heads)
          --kv-heads N        key/value heads (default 8)
          --mlp N             SwiGLU hidden units (default 1376)
          --prompt N          prompt tokens (default 32)
          --tokens N          tokens to generate (default 128)
          --threads N         CPU threads for both (default 1)
          --runs N            timed runs of each, after one untimed run of the same length; the median is reported (default 3)
        """;

    public static DecodeSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new DecodeSettings(), (s, flag) => flag.Name switch
    {
        "--layers" => s with { Layers = flag.PositiveInt() },
        "--dim" => s with { ModelDim = flag.PositiveInt() },
        "--heads" => s with { Heads = flag.PositiveInt() },
        "--kv-heads" => s with { KvHeads = flag.PositiveInt() },
        "--mlp" => s with { MlpDim = flag.PositiveInt() },
        "--prompt" => s with { PromptTokens = flag.PositiveInt() },
        "--tokens" => s with { Tokens = flag.PositiveInt() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        "--runs" => s with { Runs = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>decode</c> benchmark: Loom's batch-1 decode against llama.cpp's on the same weights.</summary>
internal static class DecodeBenchmark
{
    private const int ByteVocabulary = 258;
    private const int NeverGenerated = -1; // no end-of-sequence: every run decodes all its tokens

    private sealed record Outcome(string Engine, string Weights, double TokensPerSecond, IReadOnlyList<int> Tokens);

    public static string Run(DecodeSettings s)
    {
        set_num_threads(s.Threads);
        NativeLibraryConfig.All.WithLogCallback((_, _) => { }); // before llama.cpp loads: its log would drown the table
        var options = new DecoderLmOptions
        {
            VocabSize = ByteVocabulary, ModelDim = s.ModelDim, NumLayers = s.Layers, NumHeads = s.Heads, NumKvHeads = s.KvHeads,
            HeadDim = s.ModelDim / s.Heads, MlpDim = s.MlpDim, MaxSequenceLength = s.PromptTokens + s.Tokens + 8, ParallelBlock = false,
            SharedEmbeddings = false, ScaleSharedLogits = false,
        };
        using var random = new Generator(0);
        using var model = new DecoderLm(options, CPU, random);
        long parameters = model.ParameterCount; // before int8 quantization turns the kernels into buffers
        var prompt = Enumerable.Range(0, s.PromptTokens).Select(i => "It is a truth universally acknowledged"[i % 38] % 256).ToArray();
        string dir = Path.Combine(Path.GetTempPath(), $"loom-bench-decode-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string f32 = Path.Combine(dir, "model-f32.gguf"), q8 = Path.Combine(dir, "model-q8_0.gguf");
            GgufLlama.Export(model, f32);
            var outcomes = new List<Outcome>
            {
                Loom(model, prompt, s, "f32"),
                LlamaCpp(f32, prompt, s, "f32"), // loads llama.cpp, which the quantizer's binding needs loaded first
            };
            if (!LLamaQuantizer.Quantize(f32, q8, LLamaFtype.MOSTLY_Q8_0, s.Threads))
                throw new InvalidOperationException("llama.cpp's quantizer did not write the q8_0 file");
            var quantization = model.Quantize(QuantizationMode.Int8);
            outcomes.Add(Loom(model, prompt, s, "int8 (per-channel)"));
            outcomes.Add(LlamaCpp(q8, prompt, s, "q8_0"));
            return Report(s, parameters, options, outcomes, quantization, (new FileInfo(f32).Length, new FileInfo(q8).Length));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static Outcome Loom(LanguageModel model, int[] prompt, DecodeSettings s, string weights)
    {
        Console.Error.WriteLine($"decode: Loom {weights}, {s.Tokens} tokens");
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = s.Tokens };
        var generator = new TextGenerator(model, NeverGenerated);
        (List<int> Tokens, double PerSecond) Run()
        {
            var clock = new Stopwatch();
            var tokens = new List<int>();
            foreach (int token in generator.Generate(prompt, sampling))
            {
                if (tokens.Count == 0) clock.Start(); // the prompt is prefilled: decode steps from here
                tokens.Add(token);
            }
            clock.Stop();
            return (tokens, (tokens.Count - 1) / clock.Elapsed.TotalSeconds);
        }
        // An untimed run of the same length first: tiered compilation starts every method unoptimized, and the
        // decode loop's hot methods are recompiled optimized only after they have run for a while.
        _ = Run();
        var runs = Enumerable.Range(0, s.Runs).Select(_ => Run()).ToList();
        return new Outcome("Loom", weights, Median(runs.Select(r => r.PerSecond)), runs[0].Tokens);
    }

    private static Outcome LlamaCpp(string path, int[] prompt, DecodeSettings s, string weights)
    {
        Console.Error.WriteLine($"decode: llama.cpp {weights}, {s.Tokens} tokens");
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)(prompt.Length + s.Tokens + 8), BatchSize = (uint)prompt.Length, GpuLayerCount = 0,
            Threads = s.Threads, BatchThreads = s.Threads,
        };
        using var loaded = LLamaWeights.LoadFromFile(parameters);
        int vocab = loaded.Vocab.Count;
        List<int> Decode(int count, Stopwatch? clock)
        {
            using var context = loaded.CreateContext(parameters);
            var batch = new LLamaBatch();
            for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
            Check(context.Decode(batch));
            var tokens = new List<int>();
            int last = prompt.Length - 1;
            for (int i = 0; i < count; i++)
            {
                var row = context.NativeHandle.GetLogitsIth(last);
                int next = 0;
                for (int v = 1; v < vocab; v++) if (row[v] > row[next]) next = v;
                if (i == 0) clock?.Start(); // as for Loom: the first token comes from the prefill
                tokens.Add(next);
                if (i == count - 1) break;
                batch.Clear();
                last = batch.Add((LLamaToken)next, prompt.Length + i, LLamaSeqId.Zero, true);
                Check(context.Decode(batch));
            }
            clock?.Stop();
            return tokens;
        }
        _ = Decode(s.Tokens, null); // untimed, as for Loom
        var runs = Enumerable.Range(0, s.Runs).Select(_ =>
        {
            var timer = new Stopwatch();
            var generated = Decode(s.Tokens, timer);
            return (Tokens: generated, PerSecond: (generated.Count - 1) / timer.Elapsed.TotalSeconds);
        }).ToList();
        return new Outcome("llama.cpp", weights, Median(runs.Select(r => r.PerSecond)), runs[0].Tokens);
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    private static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
    }

    private static string Report(DecodeSettings s, long parameters, DecoderLmOptions o, List<Outcome> outcomes,
        QuantizationReport quantization, (long F32, long Q8) ggufBytes)
    {
        var text = new StringBuilder();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"## decode: batch-1 greedy decoding, Loom against llama.cpp (LLamaSharp 0.30.0), {s.Threads} thread(s)"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores; load average {MachineInfo.LoadAverage():F2}; commit {MachineInfo.GitCommit()}"));
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"- model: random-initialised Llama shape, {parameters / 1e6:F1}M parameters (d {o.ModelDim}, {o.NumLayers} layers, {o.NumHeads} heads / {o.NumKvHeads} K/V, SwiGLU {o.MlpDim}, byte vocabulary); prompt {s.PromptTokens} tokens, {s.Tokens} generated; median tokens/s of {s.Runs} timed runs each, after an untimed one"));
        text.AppendLine();
        text.AppendLine("| engine | weights | decode tokens/s | Loom / llama.cpp | greedy tokens equal to llama.cpp's |");
        text.AppendLine("|---|---|---|---|---|");
        for (int i = 0; i < outcomes.Count; i += 2)
        {
            var (loom, llama) = (outcomes[i], outcomes[i + 1]);
            int same = loom.Tokens.Zip(llama.Tokens).TakeWhile(p => p.First == p.Second).Count();
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| llama.cpp | {llama.Weights} | {llama.TokensPerSecond:F1} | | |"));
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| Loom | {loom.Weights} | {loom.TokensPerSecond:F1} | {loom.TokensPerSecond / llama.TokensPerSecond:F2}x | first {same} of {loom.Tokens.Count} |"));
        }
        double f32Ratio = outcomes[0].TokensPerSecond / outcomes[1].TokensPerSecond;
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"{(f32Ratio >= 1 / 1.5 ? "PASS" : "FAIL")}: Loom f32 decodes at {f32Ratio:F2}x llama.cpp f32 (the goal is within 1.5x, i.e. at least 0.67x)"));
        double int8Ratio = outcomes[2].TokensPerSecond / outcomes[0].TokensPerSecond;
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"{(int8Ratio >= 1 ? "PASS" : "FAIL")}: Loom int8 decodes at {int8Ratio:F2}x Loom f32 (the goal is int8 decode at least as fast as float)"));
        text.AppendLine();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Weights: Loom's linear kernels {quantization.LinearBytesBefore / 1e6:F1} MB f32 -> {quantization.LinearBytesAfter / 1e6:F1} MB int8 ({quantization.LinearRatio:F2}x smaller), whole model {quantization.ModelBytesBefore / 1e6:F1} MB -> {quantization.ModelBytesAfter / 1e6:F1} MB ({quantization.ModelRatio:F2}x); llama.cpp's GGUF files {ggufBytes.F32 / 1e6:F1} MB f32, {ggufBytes.Q8 / 1e6:F1} MB q8_0 ({(double)ggufBytes.F32 / ggufBytes.Q8:F2}x)."));
        return text.ToString();
    }
}
