using Loom.Data.FeatureConverters;
using TorchSharp;

namespace Loom.Data.Tests.FeatureConverters;

public class PrefixLmFeatureConverterTests
{
    private const int Eos = 1;

    // seqio's PrefixLMFeatureConverter docstring example (packed, task lengths 7 + 8 = 15).
    private static readonly (int[] Inputs, int[] Targets)[] SeqioExamples = [([7, 8, 5, 1], [3, 9, 1]), ([8, 4, 9, 3, 1], [4, 1])];

    [Fact]
    public void Packs_seqios_docstring_example_exactly()
    {
        // seqio's docstring lists the features with loss on inputs too; its loss_on_targets_only default
        // zeroes the inputs part (positions < len(inputs)).
        var options = new PrefixLmFeatureOptions(15) { LossOnTargetsOnly = false };
        var (rows, stats) = new PrefixLmFeatureConverter(options).Convert(SeqioExamples);
        var row = Assert.Single(rows);
        Assert.Equal([7, 8, 5, 1, 3, 9, 1, 8, 4, 9, 3, 1, 4, 1, 0], row.Targets);
        Assert.Equal([0, 7, 8, 5, 1, 3, 9, 0, 8, 4, 9, 3, 1, 4, 0], row.Tokens);
        Assert.Equal([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], row.LossWeights);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0], row.Positions);
        Assert.Equal([1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0], row.SegmentIds);
        Assert.Equal([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0], row.CausalAttention);
        Assert.Equal(2, row.SegmentCount);
        Assert.Equal(new PackingStats(Rows: 1, Examples: 2, Segments: 2, SkippedExamples: 0, LongExamples: 0, DroppedTokens: 0,
            NonPaddingTokens: 14, TotalTokens: 15), stats);

        var (targetsOnly, _) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(15)).Convert(SeqioExamples);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0], targetsOnly[0].LossWeights);
        Assert.Equal(row.CausalAttention, targetsOnly[0].CausalAttention);
    }

    [Fact]
    public void Unpacked_rows_match_seqios_convert_example_walkthrough()
    {
        // seqio's _convert_example docstring: inputs [9, 4, 6, 1], targets [3, 9, 1], length 9.
        var (rows, stats) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(9) { Pack = false })
            .Convert([([9, 4, 6, 1], [3, 9, 1]), ([5], [6, Eos])]);
        Assert.Equal(2, rows.Count);
        Assert.Equal([9, 4, 6, 1, 3, 9, 1, 0, 0], rows[0].Targets);
        Assert.Equal([1, 1, 1, 1, 1, 0, 0, 0, 0], rows[0].CausalAttention);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 0, 0], rows[0].LossWeights);
        Assert.Equal([5, 6, 1, 0, 0, 0, 0, 0, 0], rows[1].Targets);
        Assert.Equal([0, 5, 6, 0, 0, 0, 0, 0, 0], rows[1].Tokens);
        Assert.Equal([1, 1, 0, 0, 0, 0, 0, 0, 0], rows[1].CausalAttention);
        Assert.Equal([0, 1, 1, 0, 0, 0, 0, 0, 0], rows[1].LossWeights);
        Assert.Equal(10.0 / 18, stats.Efficiency, 12);
    }

    [Fact]
    public void Next_fit_opens_a_row_when_the_concatenation_does_not_fit()
    {
        // L = 8: 5 + 4 > 8, so the second example begins row 1; the third (2 tokens) joins it.
        var (rows, stats) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(8))
            .Convert([([2, 3, Eos], [4, Eos]), ([5, Eos], [6, 7]), ([8], [Eos])]);
        Assert.Equal(2, rows.Count);
        Assert.Equal([2, 3, 1, 4, 1, 0, 0, 0], rows[0].Targets);
        Assert.Equal([5, 1, 6, 7, 8, 1, 0, 0], rows[1].Targets);
        Assert.Equal([0, 5, 1, 6, 0, 8, 0, 0], rows[1].Tokens);
        Assert.Equal([1, 1, 1, 1, 2, 2, 0, 0], rows[1].SegmentIds);
        Assert.Equal([1, 1, 1, 0, 1, 1, 0, 0], rows[1].CausalAttention);
        Assert.Equal([0, 0, 1, 1, 0, 1, 0, 0], rows[1].LossWeights);
        Assert.Equal((3, 11L, 16L), (stats.Examples, stats.NonPaddingTokens, stats.TotalTokens));
    }

    [Fact]
    public void Long_concatenations_are_truncated_to_the_row()
    {
        var (rows, stats) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(6)).Convert([([2, 3, 4, 5, Eos], [6, 7, Eos])]);
        Assert.Equal([2, 3, 4, 5, 1, 6], rows[0].Targets);
        Assert.Equal([1, 1, 1, 1, 1, 1], rows[0].CausalAttention);
        Assert.Equal([0, 0, 0, 0, 0, 1], rows[0].LossWeights);
        Assert.Equal((1, 2L, 1.0), (stats.LongExamples, stats.DroppedTokens, stats.Efficiency));
    }

    [Fact]
    public void Empty_examples_are_skipped_and_bad_ones_refused()
    {
        var converter = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(4));
        var (rows, stats) = converter.Convert([([], []), ([], [7, Eos])]);
        Assert.Equal([1, 0, 0, 0], Assert.Single(rows).CausalAttention); // no inputs: only the start position
        Assert.Equal([1, 1, 0, 0], rows[0].LossWeights);
        Assert.Equal((1, 1), (stats.Examples, stats.SkippedExamples));
        Assert.Contains("no targets", Assert.Throws<ArgumentException>(() => converter.Convert([([3], [])])).Message);
        Assert.Contains("negative", Assert.Throws<ArgumentException>(() => converter.Convert([([3], [-2])])).Message);
        Assert.Throws<ArgumentException>(() => new PrefixLmFeatureOptions(0));
        Assert.Throws<ArgumentException>(() => new PrefixLmFeatureOptions(4) { PadId = -1 });
        var vocabulary = new ByteVocabulary();
        Assert.Equal((ByteVocabulary.Pad, ByteVocabulary.Pad), (PrefixLmFeatureOptions.ForVocabulary(vocabulary, 4).StartId, PrefixLmFeatureOptions.ForVocabulary(vocabulary, 4).PadId));
    }

    [Fact]
    public void Random_examples_keep_prefix_marks_loss_and_order()
    {
        var rng = new Random(77);
        var examples = new List<(int[] Inputs, int[] Targets)>();
        for (int i = 0; i < 200; i++)
        {
            var inputs = Enumerable.Range(0, rng.Next(0, 7)).Select(_ => rng.Next(2, 50)).ToArray();
            var targets = Enumerable.Range(0, rng.Next(1, 7)).Select(_ => rng.Next(2, 50)).ToArray();
            examples.Add((inputs, targets));
        }
        const int length = 16;
        var (rows, stats) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(length)).Convert(examples);
        int e = 0;
        foreach (var row in rows)
        {
            for (int s = 1; s <= row.SegmentCount; s++, e++)
            {
                var at = Enumerable.Range(0, length).Where(t => row.SegmentIds[t] == s).ToArray();
                var (inputs, targets) = examples[e];
                Assert.Equal([.. inputs, .. targets], at.Select(t => row.Targets[t]));
                Assert.Equal(at.Select((_, j) => j < inputs.Length + 1 ? 1 : 0), at.Select(t => row.CausalAttention[t]));
                Assert.Equal(at.Select((_, j) => j >= inputs.Length ? 1 : 0), at.Select(t => row.LossWeights[t]));
                Assert.Equal(at.Select((_, j) => j), at.Select(t => row.Positions[t]));
                // Within the prefix region, no decoder input is a target token.
                for (int j = 0; j < at.Length && j <= inputs.Length; j++)
                    Assert.Equal(j == 0 ? 0 : inputs[j - 1], row.Tokens[at[j]]);
            }
            Assert.All(Enumerable.Range(0, length).Where(t => row.SegmentIds[t] == 0), t => Assert.Equal((0, 0), (row.CausalAttention[t], row.LossWeights[t])));
        }
        Assert.Equal(examples.Count, e);
        Assert.Equal(examples.Sum(x => x.Inputs.Length + x.Targets.Length), stats.NonPaddingTokens);
    }

    [Fact]
    public void Batches_become_int64_tensors_that_outlive_the_converter_scope()
    {
        var (rows, _) = new PrefixLmFeatureConverter(new PrefixLmFeatureOptions(15)).Convert(SeqioExamples);
        using var scope = torch.NewDisposeScope();
        var batch = PrefixLmFeatureConverter.ToTensors(rows);
        Assert.Equal([1L, 15], batch.CausalAttention.shape);
        Assert.Equal(torch.ScalarType.Int64, batch.CausalAttention.dtype);
        Assert.Equal([1L, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0], batch.CausalAttention[0].data<long>().ToArray());
        Assert.Equal([0L, 7, 8, 5, 1, 3, 9, 0, 8, 4, 9, 3, 1, 4, 0], batch.Tokens[0].data<long>().ToArray());
        Assert.Equal(5L, batch.LossWeights.sum().item<long>());
        Assert.Equal(rows[0].Positions.Select(p => (long)p), batch.Positions[0].data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => PrefixLmFeatureConverter.ToTensors([]));
    }
}
