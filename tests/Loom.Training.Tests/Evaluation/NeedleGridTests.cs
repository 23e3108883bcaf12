using Loom.Data;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Training.Evaluation;
using static TorchSharp.torch;

namespace Loom.Training.Tests.Evaluation;

public sealed class NeedleGridTests
{
    private static readonly ByteVocabulary Bytes = new();

    private static DecoderLmOptions ByteDecoder(int context) => TinyModels.Decoder() with { VocabSize = Bytes.Size, MaxSequenceLength = context };

    [Fact]
    public void An_untrained_model_gets_an_accuracy_in_zero_to_one_for_every_cell_and_a_model_per_length()
    {
        var options = new NeedleGridOptions { Lengths = [128, 200], Depths = [0, 0.5, 1], ExamplesPerCell = 3, BatchSize = 2 };
        var asked = new List<int>();
        var result = NeedleGrid.Evaluate("no scaling", length =>
        {
            asked.Add(length);
            return Seeded.Model(ByteDecoder(length), seed: 3);
        }, Bytes, options);

        Assert.Equal([128, 200], asked);
        Assert.Equal("no scaling", result.Setting);
        Assert.Equal(3, result.Accuracy.Count);
        Assert.All(result.Accuracy, row =>
        {
            Assert.Equal(2, row.Count);
            Assert.All(row, a => Assert.InRange(a, 0, 1));
        });
        Assert.Contains("| 50% |", result.ToMarkdown(), StringComparison.Ordinal);
        Assert.Equal(3, result.ToPanel().RowLabels.Count);
    }

    [Fact]
    public void The_one_forward_check_agrees_with_token_by_token_greedy_decoding()
    {
        using var model = Seeded.Model(ByteDecoder(160), seed: 5);
        model.eval();
        var examples = Enumerable.Range(0, 3).Select(i => NeedleHaystack.Generate(9, i, 140, 0.5)).ToList();
        var prompts = examples.Select(e => Bytes.Encode(e.Inputs)).ToList();
        // What greedy decoding actually gives, six tokens on: the check must accept exactly that.
        var greedy = prompts.Select(p => GreedyDecode(model, p, 6)).ToList();
        Assert.All(NeedleGrid.GreedyMatches(model, prompts, greedy), Assert.True);
        // A wrong token anywhere, first, middle or last, is a miss.
        foreach (int at in new[] { 0, 3, 5 })
        {
            var wrong = greedy.Select(g => g.Select((t, i) => i == at ? (t + 1) % Bytes.Size : t).ToArray()).ToList();
            Assert.All(NeedleGrid.GreedyMatches(model, prompts, wrong), Assert.False);
        }
        // The needle's own answer (value, EOS): the same verdict as decoding it.
        bool[] retrieved = NeedleGrid.Retrieves(model, examples, Bytes);
        for (int i = 0; i < examples.Count; i++)
            Assert.Equal(GreedyDecode(model, prompts[i], examples[i].Value.Length + 1).SequenceEqual([.. Bytes.Encode(examples[i].Value), Bytes.EosId]), retrieved[i]);
    }

    [Fact]
    public void Invalid_grids_are_one_line_errors()
    {
        Assert.Contains("--depths 1.5 must be in [0, 1]", Assert.Throws<ArgumentException>(() => new NeedleGridOptions { Depths = [0, 1.5] }.Validate()).Message);
        Assert.Contains("--lengths 50 is too short", Assert.Throws<ArgumentException>(() => new NeedleGridOptions { Lengths = [50] }.Validate()).Message);
        Assert.Contains("--examples 0", Assert.Throws<ArgumentException>(() => new NeedleGridOptions { ExamplesPerCell = 0 }.Validate()).Message);
        using var model = Seeded.Model(ByteDecoder(128), seed: 1);
        var e = Assert.Throws<ArgumentException>(() => NeedleGrid.Retrieves(model, [NeedleHaystack.Generate(0, 0, 256, 0)], Bytes));
        Assert.Contains("exceed the model's context of 128", e.Message, StringComparison.Ordinal);
    }

    /// <summary>The reference: one forward per token over everything so far, argmax of the last position.</summary>
    private static int[] GreedyDecode(LanguageModel model, int[] prompt, int count)
    {
        var sequence = new List<int>(prompt);
        using var noGrad = no_grad();
        for (int i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(sequence.Select(t => (long)t).ToArray(), [1, sequence.Count], dtype: int64), null); // (1, T, V)
            sequence.Add((int)logits[0, -1].argmax().item<long>());
        }
        return [.. sequence.Skip(prompt.Length)];
    }
}
