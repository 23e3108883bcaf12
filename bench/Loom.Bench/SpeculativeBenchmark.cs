using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Inference;
using Loom.Inference.Speculative;
using Loom.Models;
using Loom.Training;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Flags of the <c>speculative</c> benchmark.</summary>
internal sealed record SpeculativeSettings
{
    public string Target { get; init; } = "runs/demo";
    public string? Draft { get; init; }
    public IReadOnlyList<int> DraftTokens { get; init; } = [2, 4, 6];
    public int Tokens { get; init; } = 128;
    public double Temperature { get; init; }
    public int Repeats { get; init; } = 2;
    public int Threads { get; init; } = 1;

    public const string Usage = """
        usage: loom-bench speculative --target CHECKPOINT [--draft CHECKPOINT] [flags]

        Batch-1 decoding on the CPU of a trained byte-level model (the demo's), plain against speculative in one run:
        n-gram prompt lookup and, with --draft, a smaller model trained on the same data. Each method decodes the same
        Austen prompts, interleaved over the repeats so that machine noise hits all alike; greedy output is checked
        token-identical to plain decoding. Tokens/s counts every generated token over the whole call (prefill included).

          --target DIR        target run or checkpoint folder (default runs/demo)
          --draft DIR         draft run or checkpoint folder (none: n-gram only)
          --k LIST            tokens proposed per round, comma-separated (default 2,4,6)
          --tokens N          tokens per prompt (default 128; end-of-sequence is ignored)
          --temperature T     0 = greedy (default); > 0 samples, seeded per prompt
          --repeats N         passes over the prompts per method (default 2)
          --threads N         CPU threads (default 1)
        """;

    public static SpeculativeSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new SpeculativeSettings(), (s, flag) => flag.Name switch
    {
        "--target" => s with { Target = flag.Value() },
        "--draft" => s with { Draft = flag.Value() },
        "--k" => s with { DraftTokens = flag.PositiveInts() },
        "--tokens" => s with { Tokens = flag.PositiveInt() },
        "--temperature" => s with { Temperature = flag.Number(0, inclusive: true) },
        "--repeats" => s with { Repeats = flag.PositiveInt() },
        "--threads" => s with { Threads = flag.PositiveInt() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>speculative</c> benchmark: plain against speculative decoding of one trained model.</summary>
internal static class SpeculativeBenchmark
{
    private static readonly string[] Prompts =
    [
        "It is a truth universally acknowledged, that a single man in possession of a good fortune",
        "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who",
        "\"My dear Mr. Bennet,\" said his lady to him one day, \"have you heard that",
        "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition,",
    ];

    private sealed class Method(string name, int k, Func<IReadOnlyList<int>, SamplingOptions, IEnumerable<int>> generate, Func<(long Proposed, long Accepted, int Rounds)>? counters)
    {
        public string Name => name;
        public int K => k;
        public double Seconds;
        public long Tokens, Proposed, Accepted, Rounds;
        public readonly List<List<int>> Outputs = [];

        public void Run(IReadOnlyList<int> prompt, SamplingOptions sampling, bool keep)
        {
            var clock = Stopwatch.StartNew();
            var tokens = generate(prompt, sampling).ToList();
            clock.Stop();
            Seconds += clock.Elapsed.TotalSeconds;
            Tokens += tokens.Count;
            if (counters?.Invoke() is var (p, a, r))
            {
                Proposed += p;
                Accepted += a;
                Rounds += r;
            }
            else Rounds += tokens.Count;
            if (keep) Outputs.Add(tokens);
        }
    }

    public static string Run(SpeculativeSettings s)
    {
        set_num_threads(s.Threads);
        string targetDir = TrainingCheckpoint.Resolve(s.Target);
        var (target, manifest) = ModelCheckpoint.Load(targetDir, CPU);
        using var targetModel = target;
        var vocabulary = Loom.Inference.CheckpointVocabulary.Load(targetDir, manifest);
        LanguageModel? draft = s.Draft is null ? null : ModelCheckpoint.Load(TrainingCheckpoint.Resolve(s.Draft), CPU).Model;
        using var draftModel = draft;
        var prompts = Prompts.Select(p => vocabulary.Encode(p)).ToList();
        const int neverEos = -1;

        var plain = new TextGenerator(target, neverEos);
        var methods = new List<Method> { new("plain", 0, plain.Generate, null) };
        foreach (int k in s.DraftTokens)
        {
            var ngram = new SpeculativeGenerator(target, neverEos, new SpeculativeOptions { DraftTokens = k });
            methods.Add(new Method("n-gram", k, ngram.Generate, () => (ngram.LastProposedTokens, ngram.LastAcceptedTokens, ngram.LastRounds)));
            if (draft is null) continue;
            var withDraft = new SpeculativeGenerator(target, neverEos, new SpeculativeOptions { DraftTokens = k, Draft = draft });
            methods.Add(new Method("draft", k, withDraft.Generate, () => (withDraft.LastProposedTokens, withDraft.LastAcceptedTokens, withDraft.LastRounds)));
        }

        var sampling = new SamplingOptions { Temperature = s.Temperature, MaxTokens = s.Tokens, StopAtEos = false };
        // Warm-up: one short unmeasured call of each.
        foreach (var m in methods) m.Run(prompts[0], sampling with { MaxTokens = 8, Seed = 0 }, keep: false);
        foreach (var m in methods) (m.Seconds, m.Tokens, m.Proposed, m.Accepted, m.Rounds) = (0, 0, 0, 0, 0);

        for (int repeat = 0; repeat < s.Repeats; repeat++)
            for (int i = 0; i < prompts.Count; i++)
                foreach (var m in methods)
                {
                    Console.Error.WriteLine($"speculative: pass {repeat + 1}/{s.Repeats}, prompt {i + 1}/{prompts.Count}, {m.Name}{(m.K > 0 ? $" k={m.K}" : "")}");
                    m.Run(prompts[i], sampling with { Seed = i }, keep: repeat == 0);
                }
        return Report(s, target, draft, methods);
    }

    private static string Report(SpeculativeSettings s, LanguageModel target, LanguageModel? draft, List<Method> methods)
    {
        var inv = CultureInfo.InvariantCulture;
        var plain = methods[0];
        double baseline = plain.Tokens / plain.Seconds;
        var text = new StringBuilder();
        text.AppendLine(inv, $"## `loom-bench speculative` ({DateTime.UtcNow:yyyy-MM-dd})");
        text.AppendLine();
        text.AppendLine(inv, $"{MachineInfo.CpuModel()}, load average {MachineInfo.LoadAverage():F1} at the end, commit {MachineInfo.GitCommit()}; {s.Threads} thread(s); {(s.Temperature == 0 ? "greedy" : $"temperature {s.Temperature}")}; {Prompts.Length} Austen prompts × {s.Tokens} tokens × {s.Repeats} passes per method.");
        string drafted = draft is null ? "No draft model." : string.Create(inv, $"Draft: {s.Draft} ({draft.ParameterCount:N0} parameters, {draft.KvCacheShape.NumLayers} layers).");
        text.AppendLine(inv, $"Target: {s.Target} ({target.ParameterCount:N0} parameters, {target.KvCacheShape.NumLayers} layers). {drafted}");
        text.AppendLine();
        text.AppendLine("| method | k | tokens/s | speed-up | acceptance (accepted / proposed) | tokens per target forward | output |");
        text.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var m in methods)
        {
            double rate = m.Tokens / m.Seconds;
            string acceptance = m.K == 0 ? "—" : m.Proposed == 0 ? "none proposed" : string.Create(inv, $"{(double)m.Accepted / m.Proposed:P1} ({m.Accepted} / {m.Proposed})");
            string same = m.K == 0 ? "reference"
                : s.Temperature > 0 ? "sampled (same distribution)"
                : m.Outputs.Zip(plain.Outputs).All(p => p.First.SequenceEqual(p.Second)) ? "identical" : "DIFFERS";
            text.AppendLine(inv, $"| {m.Name} | {(m.K == 0 ? "—" : m.K.ToString(inv))} | {rate:F1} | {rate / baseline:F2}× | {acceptance} | {(double)m.Tokens / Math.Max(1, m.Rounds):F2} | {same} |");
        }
        text.AppendLine();
        return text.ToString();
    }
}
