using System.Globalization;
using Loom.Data;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Training.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Training.Evaluation;

/// <summary>The grid a <see cref="NeedleGrid"/> evaluates: context lengths × needle depths, and examples per cell.</summary>
public sealed record NeedleGridOptions
{
    /// <summary>Context lengths in tokens (<c>--lengths</c>), each holding the needle, question and answer.</summary>
    public IReadOnlyList<int> Lengths { get; init; } = [256, 512, 1024, 2048, 4096, 8192];

    /// <summary>Needle depths (<c>--depths</c>), each in [0, 1].</summary>
    public IReadOnlyList<double> Depths { get; init; } = [0, 0.25, 0.5, 0.75, 1];

    /// <summary>Examples per cell (<c>--examples</c>, at least 1); example i of every cell has the same key, value and filler stream.</summary>
    public int ExamplesPerCell { get; init; } = 10;

    /// <summary>Seed of the examples (<c>--seed</c>); keep it apart from the training task's seed so that no example was trained on.</summary>
    public ulong Seed { get; init; } = 20261130;

    /// <summary>Rows per forward pass (<c>--batch</c>, at least 1).</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Throws a one-line <see cref="ArgumentException"/> naming the first invalid field; returns the options.</summary>
    public NeedleGridOptions Validate()
    {
        if (Lengths.Count == 0) throw new ArgumentException("needle grid: --lengths needs at least one length");
        if (Depths.Count == 0) throw new ArgumentException("needle grid: --depths needs at least one depth");
        foreach (int length in Lengths)
            if (length < NeedleHaystack.MinimumLength)
                throw new ArgumentException($"needle grid: --lengths {length} is too short to hold the needle, the question and the answer: use at least {NeedleHaystack.MinimumLength}");
        foreach (double depth in Depths)
            if (!(depth >= 0 && depth <= 1)) throw new ArgumentException($"needle grid: --depths {depth.ToString(CultureInfo.InvariantCulture)} must be in [0, 1]");
        if (ExamplesPerCell < 1) throw new ArgumentException($"needle grid: --examples {ExamplesPerCell} must be at least 1");
        if (BatchSize < 1) throw new ArgumentException($"needle grid: --batch {BatchSize} must be at least 1");
        return this;
    }
}

/// <summary>Retrieval accuracy over a grid, for one setting (e.g. a RoPE scaling).</summary>
/// <param name="Setting">What was evaluated, e.g. "no scaling" or "YaRN".</param>
/// <param name="Lengths">The columns: context lengths in tokens.</param>
/// <param name="Depths">The rows: needle depths.</param>
/// <param name="Accuracy">Accuracy[depth][length], each in [0, 1].</param>
/// <param name="ExamplesPerCell">Examples behind each accuracy.</param>
public sealed record NeedleGridResult(string Setting, IReadOnlyList<int> Lengths, IReadOnlyList<double> Depths, IReadOnlyList<IReadOnlyList<double>> Accuracy, int ExamplesPerCell)
{
    /// <summary>The mean accuracy at one length, over depths.</summary>
    public double MeanAt(int lengthIndex) => Depths.Select((_, d) => Accuracy[d][lengthIndex]).Average();

    /// <summary>The result as a heat-map panel (rows: depths, columns: lengths).</summary>
    public HeatMapPanel ToPanel() => new(Setting,
        [.. Depths.Select(d => (100 * d).ToString("0", CultureInfo.InvariantCulture) + "%")],
        [.. Lengths.Select(LengthLabel)],
        Accuracy);

    /// <summary>A Markdown table: a row per depth, a column per length, accuracies in percent, and the mean.</summary>
    public string ToMarkdown()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new System.Text.StringBuilder();
        text.AppendLine(c, $"| {Setting}: depth \\ length | {string.Join(" | ", Lengths.Select(LengthLabel))} |");
        text.AppendLine($"|---|{string.Concat(Lengths.Select(_ => "---|"))}");
        for (int d = 0; d < Depths.Count; d++)
            text.AppendLine(c, $"| {100 * Depths[d]:0}% | {string.Join(" | ", Accuracy[d].Select(a => (100 * a).ToString("0", c)))} |");
        text.AppendLine(c, $"| mean | {string.Join(" | ", Lengths.Select((_, l) => (100 * MeanAt(l)).ToString("0", c)))} |");
        return text.ToString();
    }

    private static string LengthLabel(int length) =>
        length >= 1024 && length % 1024 == 0 ? $"{length / 1024}k" : length.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Needle-in-a-haystack retrieval over a grid of context length × needle depth (Gemini 1.5): for every
/// cell, the fraction of examples whose answer greedy decoding gets exactly right.
/// </summary>
/// <remarks>
/// Greedy decoding yields the answer a (then EOS) exactly when, fed the prompt and a's first i tokens,
/// the model's argmax is a's token i for every i, and EOS after the last. So one teacher-forced forward
/// over prompt ++ a decides the exact match, with no cache and no token-by-token loop (see
/// <see cref="Retrieves"/>; the test suite holds it to a token-by-token greedy decode).
/// </remarks>
public static class NeedleGrid
{
    /// <summary>
    /// Evaluates the grid. <paramref name="modelFor"/> is called once per length (so that a RoPE scaling
    /// can follow the length) and the model it returns is disposed once that length is done.
    /// </summary>
    /// <param name="setting">The name the result carries.</param>
    /// <param name="modelFor">The model to evaluate at a length; it must accept sequences of that length.</param>
    /// <param name="vocabulary">The vocabulary the model reads (byte: one token per character).</param>
    /// <param name="options">The grid.</param>
    /// <param name="progress">Receives one line per length.</param>
    public static NeedleGridResult Evaluate(string setting, Func<int, LanguageModel> modelFor, IVocabulary vocabulary, NeedleGridOptions options,
        IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(modelFor);
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var accuracy = options.Depths.Select(_ => new double[options.Lengths.Count]).ToArray();
        for (int l = 0; l < options.Lengths.Count; l++)
        {
            int length = options.Lengths[l];
            using var model = modelFor(length);
            for (int d = 0; d < options.Depths.Count; d++)
            {
                var examples = Enumerable.Range(0, options.ExamplesPerCell)
                    .Select(i => NeedleHaystack.Generate(options.Seed, i, length, options.Depths[d])).ToList();
                int correct = 0;
                foreach (var batch in examples.Chunk(options.BatchSize)) correct += Retrieves(model, batch, vocabulary).Count(ok => ok);
                accuracy[d][l] = correct / (double)examples.Count;
            }
            progress?.Report(string.Create(CultureInfo.InvariantCulture,
                $"{setting}: {length} tokens: {string.Join(" ", options.Depths.Select((depth, d) => $"{100 * depth:0}%={100 * accuracy[d][l]:0}"))}"));
        }
        return new NeedleGridResult(setting, options.Lengths, options.Depths, accuracy, options.ExamplesPerCell);
    }

    /// <summary>
    /// Whether greedy decoding after each example's prompt gives exactly its value and then EOS, from one
    /// forward pass over prompt ++ value (see the remarks on <see cref="NeedleGrid"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The examples differ in prompt or answer length (they must stack into one batch).</exception>
    public static bool[] Retrieves(LanguageModel model, IReadOnlyList<NeedleExample> examples, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(vocabulary);
        return GreedyMatches(model, [.. examples.Select(e => vocabulary.Encode(e.Inputs))],
            [.. examples.Select(e => (int[])[.. vocabulary.Encode(e.Targets), vocabulary.EosId])]);
    }

    /// <summary>
    /// Whether greedy decoding after each prompt gives exactly the tokens of its answer (compare the stop token
    /// too by ending the answer with it), decided by one teacher-forced forward over prompt ++ answer.
    /// </summary>
    /// <param name="model">The model; its context must hold prompt ++ answer less the answer's last token.</param>
    /// <param name="prompts">Token ids, all of one length.</param>
    /// <param name="answers">Token ids, all of one length, one per prompt.</param>
    /// <exception cref="ArgumentException">Prompts or answers differ in length, or they do not fit the model's context.</exception>
    public static bool[] GreedyMatches(LanguageModel model, IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> answers)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(answers);
        if (prompts.Count != answers.Count) throw new ArgumentException($"needle grid: {prompts.Count} prompts but {answers.Count} answers");
        if (prompts.Count == 0) return [];
        int p = prompts[0].Length, a = answers[0].Length, b = prompts.Count;
        if (p == 0 || a == 0 || prompts.Any(x => x.Length != p) || answers.Any(x => x.Length != a))
            throw new ArgumentException("needle grid: prompts in one batch must share one (non-zero) length, and answers another");
        if (p + a - 1 > model.ContextLength)
            throw new ArgumentException($"needle grid: {p + a - 1} tokens exceed the model's context of {model.ContextLength}; build it with model.max_sequence_length at least that");

        var device = model.parameters().First().device;
        using var _ = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        long[] flat = [.. prompts.Zip(answers).SelectMany(pa => pa.First.Concat(pa.Second[..^1])).Select(t => (long)t)];
        var tokens = tensor(flat, [b, p + a - 1], dtype: int64, device: device); // (B, P + A - 1): the answer's last token is only predicted
        var logits = model.Forward(tokens, null);                                 // (B, P + A - 1, V)
        var predicted = logits.narrow(1, p - 1, a).argmax(-1);                    // (B, A): what follows the prompt and each answer prefix
        var expected = tensor([.. answers.SelectMany(x => x).Select(t => (long)t)], [b, a], dtype: int64, device: device); // (B, A)
        var hits = predicted.eq(expected).all(1).cpu();                           // (B)
        return [.. hits.data<bool>()];
    }
}
