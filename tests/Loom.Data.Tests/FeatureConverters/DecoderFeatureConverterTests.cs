using Loom.Data.FeatureConverters;
using TorchSharp;

namespace Loom.Data.Tests.FeatureConverters;

public class DecoderFeatureConverterTests
{
    private const int Eos = 1;

    // Four examples of 3, 2, 4 and 2 tokens, each ending with EOS.
    private static readonly int[][] Examples = [[5, 6, Eos], [7, Eos], [8, 9, 10, Eos], [11, Eos]];

    [Fact]
    public void Packs_a_hand_made_example_exactly()
    {
        // L = 8, next-fit: row 0 takes examples 0 and 1 (5 tokens); example 2 (4 tokens) does not fit in the
        // 3 left, so row 1 takes examples 2 and 3 (6 tokens).
        var (rows, stats) = new DecoderFeatureConverter(new DecoderFeatureOptions(8)).Convert(Examples);
        Assert.Equal(2, rows.Count);

        Assert.Equal([5, 6, 1, 7, 1, 0, 0, 0], rows[0].Targets);
        Assert.Equal([0, 5, 6, 0, 7, 0, 0, 0], rows[0].Tokens);
        Assert.Equal([1, 1, 1, 2, 2, 0, 0, 0], rows[0].SegmentIds);
        Assert.Equal([0, 1, 2, 0, 1, 0, 0, 0], rows[0].Positions);
        Assert.Equal([1, 1, 1, 1, 1, 0, 0, 0], rows[0].LossWeights);

        Assert.Equal([8, 9, 10, 1, 11, 1, 0, 0], rows[1].Targets);
        Assert.Equal([0, 8, 9, 10, 0, 11, 0, 0], rows[1].Tokens);
        Assert.Equal([1, 1, 1, 1, 2, 2, 0, 0], rows[1].SegmentIds);
        Assert.Equal([0, 1, 2, 3, 0, 1, 0, 0], rows[1].Positions);
        Assert.Equal([1, 1, 1, 1, 1, 1, 0, 0], rows[1].LossWeights);
        Assert.Equal(2, rows[1].SegmentCount);

        Assert.Equal(new PackingStats(Rows: 2, Examples: 4, Segments: 4, SkippedExamples: 0, LongExamples: 0, DroppedTokens: 0,
            NonPaddingTokens: 11, TotalTokens: 16), stats);
        Assert.Equal(11.0 / 16, stats.Efficiency, 12);
    }

    [Fact]
    public void Start_and_pad_ids_are_configurable()
    {
        var options = new DecoderFeatureOptions(6) { StartId = 2, PadId = 3 };
        var (rows, _) = new DecoderFeatureConverter(options).Convert([[5, 6, Eos], [7, Eos]]);
        Assert.Equal([2, 5, 6, 2, 7, 3], Assert.Single(rows).Tokens);
        Assert.Equal([5, 6, 1, 7, 1, 3], rows[0].Targets);
        Assert.Equal([1, 1, 1, 2, 2, 0], rows[0].SegmentIds);
    }

    [Fact]
    public void Vocabulary_options_use_its_pad_id_to_start_segments_and_pad()
    {
        var vocabulary = new ByteVocabulary();
        var options = DecoderFeatureOptions.ForVocabulary(vocabulary, 5);
        int[] example = [.. vocabulary.Encode("\0a"), vocabulary.EosId]; // byte 0x00 is a real token here
        var (rows, _) = new DecoderFeatureConverter(options).Convert([example]);
        Assert.Equal([ByteVocabulary.Pad, 0, 97, ByteVocabulary.Pad, ByteVocabulary.Pad], rows[0].Tokens);
        Assert.Equal([0, 97, ByteVocabulary.Eos, ByteVocabulary.Pad, ByteVocabulary.Pad], rows[0].Targets);
        Assert.Equal([1, 1, 1, 0, 0], rows[0].LossWeights);
    }

    [Fact]
    public void Unpacked_mode_puts_one_padded_example_per_row()
    {
        var (rows, stats) = new DecoderFeatureConverter(new DecoderFeatureOptions(8) { Pack = false }).Convert(Examples);
        Assert.Equal(4, rows.Count);
        Assert.Equal([7, 1, 0, 0, 0, 0, 0, 0], rows[1].Targets);
        Assert.Equal([0, 7, 0, 0, 0, 0, 0, 0], rows[1].Tokens);
        Assert.Equal([1, 1, 0, 0, 0, 0, 0, 0], rows[1].SegmentIds);
        Assert.Equal([0, 1, 0, 0, 0, 0, 0, 0], rows[1].Positions);
        Assert.Equal([1, 1, 0, 0, 0, 0, 0, 0], rows[1].LossWeights);
        Assert.All(rows, r => Assert.Equal(1, r.SegmentCount));
        Assert.Equal(11.0 / 32, stats.Efficiency, 12);
    }

    [Fact]
    public void Long_examples_are_truncated_or_split()
    {
        int[] longExample = [21, 22, 23, 24, 25, Eos];
        var (truncated, tStats) = new DecoderFeatureConverter(new DecoderFeatureOptions(4)).Convert([longExample, [7, Eos]]);
        Assert.Equal([21, 22, 23, 24], truncated[0].Targets);
        Assert.Equal([0, 21, 22, 23], truncated[0].Tokens);
        Assert.Equal([7, 1, 0, 0], truncated[1].Targets);
        Assert.Equal((1, 2L, 6L, 8L), (tStats.LongExamples, tStats.DroppedTokens, tStats.NonPaddingTokens, tStats.TotalTokens));

        // Split: pieces [21..24] and [25, EOS] are separate segments; the second piece fills a new row and
        // the short example joins it.
        var options = new DecoderFeatureOptions(4) { LongExamples = LongExampleHandling.Split };
        var (split, sStats) = new DecoderFeatureConverter(options).Convert([longExample, [7, Eos]]);
        Assert.Equal(2, split.Count);
        Assert.Equal([25, 1, 7, 1], split[1].Targets);
        Assert.Equal([0, 25, 0, 7], split[1].Tokens);
        Assert.Equal([1, 1, 2, 2], split[1].SegmentIds);
        Assert.Equal((2, 3, 0L, 1.0), (sStats.Examples, sStats.Segments, sStats.DroppedTokens, sStats.Efficiency));
    }

    [Fact]
    public void Empty_examples_are_skipped_and_negative_ids_rejected()
    {
        var converter = new DecoderFeatureConverter(new DecoderFeatureOptions(4));
        var (rows, stats) = converter.Convert([[], [7, Eos], []]);
        Assert.Single(rows);
        Assert.Equal((1, 2), (stats.Examples, stats.SkippedExamples));
        var (none, noStats) = converter.Convert([]);
        Assert.Empty(none);
        Assert.Equal(0.0, noStats.Efficiency);
        Assert.Throws<ArgumentException>(() => converter.Convert([[3, -1]]));
        Assert.Throws<ArgumentException>(() => new DecoderFeatureOptions(0));
        Assert.Throws<ArgumentException>(() => new DecoderFeatureOptions(4) { StartId = -1 });
    }

    [Fact]
    public void Random_examples_never_cross_rows_and_targets_are_next_inputs_within_segments()
    {
        var rng = new Random(1234);
        var examples = new List<int[]>();
        for (int i = 0; i < 300; i++)
        {
            var example = new int[rng.Next(1, 17)];
            for (int j = 0; j < example.Length - 1; j++) example[j] = rng.Next(2, 100);
            example[^1] = Eos;
            examples.Add(example);
        }
        const int length = 16;
        var (rows, stats) = new DecoderFeatureConverter(new DecoderFeatureOptions(length)).Convert(examples);

        var recovered = new List<int[]>();
        foreach (var row in rows)
        {
            Assert.All(new[] { row.Tokens, row.Targets, row.SegmentIds, row.Positions, row.LossWeights }, f => Assert.Equal(length, f.Length));
            for (int t = 0; t < length; t++)
            {
                // Within a segment, the input at t + 1 is the target at t.
                if (t + 1 < length && row.SegmentIds[t] != 0 && row.SegmentIds[t + 1] == row.SegmentIds[t])
                {
                    Assert.Equal(row.Targets[t], row.Tokens[t + 1]);
                    Assert.Equal(row.Positions[t] + 1, row.Positions[t + 1]);
                }
                Assert.Equal(row.SegmentIds[t] != 0 ? 1 : 0, row.LossWeights[t]);
                if (row.Positions[t] == 0 && row.SegmentIds[t] != 0) Assert.Equal(0, row.Tokens[t]);
            }
            // Segments number 1, 2, ... left to right, then padding only.
            int previous = 1;
            for (int t = 0; t < length; t++)
            {
                int s = row.SegmentIds[t];
                Assert.True(s == 0 ? true : s == previous || s == previous + 1, $"segment ids out of order: {string.Join(',', row.SegmentIds)}");
                if (s == 0) Assert.All(row.SegmentIds[t..], z => Assert.Equal(0, z));
                if (s != 0) previous = s;
            }
            for (int s = 1; s <= row.SegmentCount; s++)
                recovered.Add(row.Targets.Where((_, t) => row.SegmentIds[t] == s).ToArray());
        }
        // Every example appears whole, in order, in exactly one row.
        Assert.Equal(examples.Count, recovered.Count);
        for (int i = 0; i < examples.Count; i++) Assert.Equal(examples[i], recovered[i]);
        Assert.Equal(examples.Sum(e => e.Length), stats.NonPaddingTokens);
        Assert.Equal((double)stats.NonPaddingTokens / (rows.Count * length), stats.Efficiency, 12);
        Assert.Equal(rows.Sum(r => r.LossWeights.Sum()), stats.NonPaddingTokens);
    }

    [Fact]
    public void Batches_become_int64_tensors_that_outlive_the_converter_scope()
    {
        var (rows, _) = new DecoderFeatureConverter(new DecoderFeatureOptions(8)).Convert(Examples);
        using var scope = torch.NewDisposeScope();
        var batch = DecoderFeatureConverter.ToTensors(rows);
        Assert.Equal([2L, 8], batch.Tokens.shape);
        Assert.Equal(torch.ScalarType.Int64, batch.SegmentIds.dtype);
        Assert.Equal([0L, 8, 9, 10, 0, 11, 0, 0], batch.Tokens[1].data<long>().ToArray());
        Assert.Equal([1L, 1, 1, 2, 2, 0, 0, 0], batch.SegmentIds[0].data<long>().ToArray());
        Assert.Equal([0L, 1, 2, 3, 0, 1, 0, 0], batch.Positions[1].data<long>().ToArray());
        Assert.Equal(11L, batch.LossWeights.sum().item<long>());
        Assert.Equal([5L, 6, 1, 7, 1, 0, 0, 0], batch.Targets[0].data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => DecoderFeatureConverter.ToTensors([]));
    }
}
