using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Inference.Constraints;

namespace Loom.Bench;

/// <summary>Flags of the <c>constraint-masks</c> benchmark.</summary>
internal sealed record ConstraintMaskSettings
{
    public int Draws { get; init; } = 20;
    public int Budget { get; init; } = 120;
    public long Seed { get; init; }

    public const string Usage = """
        usage: loom-bench constraint-masks [flags]

        Times the token masks of structured output (TokenConstraint.FillAllowed) over the byte vocabulary and
        tiktoken's cl100k_base and o200k_base: the vocabulary's trie (built once per vocabulary), then draws of a
        fixed JSON schema (a request of --budget tokens, each token drawn uniformly among the allowed ones) with the
        time of every mask: cold (a state seen for the first time in the request: a trie walk) and warm (cached).

          --draws N    requests per vocabulary (default 20)
          --budget N   tokens per request (default 120)
          --seed N     the draws' random seed (default 0)
        """;

    public static ConstraintMaskSettings Parse(IReadOnlyList<string> args) => BenchFlags.Parse(args, new ConstraintMaskSettings(), (s, flag) => flag.Name switch
    {
        "--draws" => s with { Draws = (int)Math.Max(1, flag.NonNegativeLong()) },
        "--budget" => s with { Budget = (int)Math.Max(8, flag.NonNegativeLong()) },
        "--seed" => s with { Seed = flag.NonNegativeLong() },
        _ => throw flag.Unknown(),
    });
}

/// <summary>The <c>constraint-masks</c> benchmark: how long a constrained request's token mask takes, per vocabulary.</summary>
internal static class ConstraintMaskBenchmark
{
    private const string Schema = """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"email":{"type":["string","null"]},
         "tags":{"type":"array","items":{"enum":["red","green","blue"]},"maxItems":4},
         "address":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string","maxLength":10}},"required":["street"]}},
         "required":["name","age","tags","address"],"additionalProperties":false}
        """;

    public static string Run(ConstraintMaskSettings settings)
    {
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"## constraint-masks: token-mask time of structured output, {DateTime.UtcNow:yyyy-MM-dd}");
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"{settings.Draws} requests of {settings.Budget} tokens per vocabulary, seed {settings.Seed}, one thread; {Environment.ProcessorCount} cores.");
        report.AppendLine();
        report.AppendLine("| vocabulary | ids | trie build (ms) | masks | cold masks | cold mean (ms) | cold max (ms) | warm mean (ms) | all p50 (ms) | all p99 (ms) |");
        report.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        using var schema = JsonDocument.Parse(Schema);
        var grammar = Grammar.JsonSchema(schema.RootElement);
        foreach (var make in (Func<IVocabulary>[])[() => new ByteVocabulary(), () => new TiktokenVocabulary("cl100k_base"), () => new TiktokenVocabulary("o200k_base")])
        {
            var vocabulary = make();
            var factory = new TokenConstraintFactory(vocabulary);
            var clock = Stopwatch.StartNew();
            factory.Create(grammar); // builds the trie
            double trieMs = clock.Elapsed.TotalMilliseconds;
            var rng = new Random((int)settings.Seed);
            var cold = new List<double>();
            var warm = new List<double>();
            var allowed = new bool[vocabulary.Size];
            var candidates = new List<int>();
            for (int d = 0; d < settings.Draws; d++)
            {
                var constraint = factory.Create(grammar, settings.Budget);
                var seen = new HashSet<string>();
                for (int step = 0; step < settings.Budget; step++)
                {
                    clock.Restart();
                    constraint.FillAllowed(allowed);
                    double ms = clock.Elapsed.TotalMilliseconds;
                    candidates.Clear();
                    for (int i = 0; i < allowed.Length; i++) if (allowed[i]) candidates.Add(i);
                    // A mask is cold when its set of allowed ids is new in this request (a fresh trie walk).
                    (seen.Add(Fingerprint(candidates)) ? cold : warm).Add(ms);
                    int token = candidates[rng.Next(candidates.Count)];
                    if (token == vocabulary.EosId) break;
                    constraint.Advance(token);
                }
            }
            var all = cold.Concat(warm).OrderBy(x => x).ToList();
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {vocabulary.Name} | {vocabulary.Size:N0} | {trieMs:F0} | {all.Count} | {cold.Count} | {cold.Average():F2} | {cold.Max():F2} | {(warm.Count > 0 ? warm.Average() : 0):F3} | {all[all.Count / 2]:F3} | {all[(int)(all.Count * 0.99)]:F2} |");
            Console.Error.WriteLine($"constraint-masks: {vocabulary.Name} done");
        }
        return report.ToString();
    }

    private static string Fingerprint(List<int> ids)
    {
        var hash = new HashCode();
        foreach (int id in ids) hash.Add(id);
        return $"{ids.Count}:{hash.ToHashCode()}";
    }
}
