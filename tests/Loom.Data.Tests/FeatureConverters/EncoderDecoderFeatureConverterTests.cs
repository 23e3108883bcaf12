using Loom.Data.FeatureConverters;
using TorchSharp;

namespace Loom.Data.Tests.FeatureConverters;

public class EncoderDecoderFeatureConverterTests
{
    private const int Eos = 1;

    // seqio's EncDecFeatureConverter docstring example (packed, inputs length 10, targets length 7).
    private static readonly (int[] Inputs, int[] Targets)[] SeqioExamples = [([7, 8, 5, 1], [3, 9, 1]), ([8, 4, 9, 3, 1], [4, 1])];

    [Fact]
    public void Packs_seqios_docstring_example_exactly()
    {
        var (rows, stats) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(10, 7)).Convert(SeqioExamples);
        var row = Assert.Single(rows);
        Assert.Equal([7, 8, 5, 1, 8, 4, 9, 3, 1, 0], row.Encoder.Tokens);
        Assert.Equal([1, 1, 1, 1, 2, 2, 2, 2, 2, 0], row.Encoder.SegmentIds);
        Assert.Equal([0, 1, 2, 3, 0, 1, 2, 3, 4, 0], row.Encoder.Positions);
        Assert.Equal([3, 9, 1, 4, 1, 0, 0], row.Decoder.Targets);
        Assert.Equal([0, 3, 9, 0, 4, 0, 0], row.Decoder.Tokens);
        Assert.Equal([1, 1, 1, 1, 1, 0, 0], row.Decoder.LossWeights);
        Assert.Equal([1, 1, 1, 2, 2, 0, 0], row.Decoder.SegmentIds);
        Assert.Equal([0, 1, 2, 0, 1, 0, 0], row.Decoder.Positions);
        Assert.Equal(2, row.SegmentCount);
        Assert.Equal(new PackingStats(1, 2, 2, 0, 0, 0, NonPaddingTokens: 9, TotalTokens: 10), stats.Encoder);
        Assert.Equal(new PackingStats(1, 2, 2, 0, 0, 0, NonPaddingTokens: 5, TotalTokens: 7), stats.Decoder);
        Assert.Equal(0.9, stats.Encoder.Efficiency, 12);
    }

    [Fact]
    public void An_example_joins_a_row_only_if_both_sides_fit()
    {
        var converter = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(6, 4));
        // Example 1's inputs fit the encoder's 3 free positions but its targets (3) not the decoder's 2.
        var (decoderFull, _) = converter.Convert([([2, 3, Eos], [4, Eos]), ([5, 6, Eos], [7, 8, Eos])]);
        Assert.Equal(2, decoderFull.Count);
        // Example 1's targets fit the decoder's 2 free positions but its inputs (4) not the encoder's 3.
        var (encoderFull, _) = converter.Convert([([2, 3, Eos], [4, Eos]), ([5, 6, 7, Eos], [8, Eos])]);
        Assert.Equal(2, encoderFull.Count);
        // Both fit: one row.
        var (packed, stats) = converter.Convert([([2, 3, Eos], [4, Eos]), ([5, 6, Eos], [7, Eos])]);
        var row = Assert.Single(packed);
        Assert.Equal([2, 3, 1, 5, 6, 1], row.Encoder.Tokens);
        Assert.Equal([4, 1, 7, 1], row.Decoder.Targets);
        Assert.Equal((1.0, 1.0), (stats.Encoder.Efficiency, stats.Decoder.Efficiency));
    }

    [Fact]
    public void Each_side_is_truncated_to_its_own_length()
    {
        var (rows, stats) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(3, 4) { StartId = 2, PadId = 9 })
            .Convert([([5, 6, 7, 8, Eos], [3, Eos])]);
        Assert.Equal([5, 6, 7], rows[0].Encoder.Tokens);
        Assert.Equal([3, 1, 9, 9], rows[0].Decoder.Targets);
        Assert.Equal([2, 3, 9, 9], rows[0].Decoder.Tokens);
        Assert.Equal((1, 2L), (stats.Encoder.LongExamples, stats.Encoder.DroppedTokens));
        Assert.Equal((0, 0L), (stats.Decoder.LongExamples, stats.Decoder.DroppedTokens));
    }

    [Fact]
    public void Unpacked_mode_puts_one_example_per_row_and_empty_sides_are_allowed()
    {
        var converter = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(4, 4) { Pack = false });
        var (rows, stats) = converter.Convert([([2, Eos], [3, Eos]), ([], []), ([4, Eos], [])]);
        Assert.Equal(2, rows.Count);
        Assert.Equal([4, 1, 0, 0], rows[1].Encoder.Tokens);
        Assert.Equal([1, 1, 0, 0], rows[1].Encoder.SegmentIds);
        Assert.Equal([0, 0, 0, 0], rows[1].Decoder.SegmentIds);
        Assert.Equal([0, 0, 0, 0], rows[1].Decoder.LossWeights);
        Assert.Equal((2, 1, 2, 1), (stats.Encoder.Examples, stats.Encoder.SkippedExamples, stats.Encoder.Segments, stats.Decoder.Segments));
        Assert.Contains("negative", Assert.Throws<ArgumentException>(() => converter.Convert([([-1], [2])])).Message);
        Assert.Throws<ArgumentException>(() => new EncoderDecoderFeatureOptions(4, 0));
        Assert.Throws<ArgumentException>(() => new EncoderDecoderFeatureOptions(0, 4));
    }

    [Fact]
    public void Random_examples_keep_segment_k_of_both_sides_as_one_example()
    {
        var rng = new Random(4321);
        var examples = new List<(int[] Inputs, int[] Targets)>();
        for (int i = 0; i < 300; i++)
            examples.Add((Enumerable.Range(0, rng.Next(1, 12)).Select(_ => rng.Next(2, 90)).ToArray(),
                          Enumerable.Range(0, rng.Next(1, 6)).Select(_ => rng.Next(2, 90)).ToArray()));
        var (rows, stats) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(16, 8)).Convert(examples);
        int e = 0;
        foreach (var row in rows)
        {
            Assert.Equal(row.Encoder.SegmentCount, row.Decoder.SegmentCount);
            for (int s = 1; s <= row.SegmentCount; s++, e++)
            {
                Assert.Equal(examples[e].Inputs, row.Encoder.Tokens.Where((_, t) => row.Encoder.SegmentIds[t] == s));
                Assert.Equal(examples[e].Targets, row.Decoder.Targets.Where((_, t) => row.Decoder.SegmentIds[t] == s));
                Assert.Equal(Enumerable.Range(0, examples[e].Inputs.Length), row.Encoder.Positions.Where((_, t) => row.Encoder.SegmentIds[t] == s));
            }
        }
        Assert.Equal(examples.Count, e);
        Assert.Equal(examples.Sum(x => x.Inputs.Length), stats.Encoder.NonPaddingTokens);
        Assert.Equal(examples.Sum(x => x.Targets.Length), stats.Decoder.NonPaddingTokens);
        Assert.Equal((long)rows.Count * 16, stats.Encoder.TotalTokens);
        Assert.Equal((long)rows.Count * 8, stats.Decoder.TotalTokens);
    }

    [Fact]
    public void Batches_become_int64_tensors_of_each_sides_length()
    {
        var (rows, _) = new EncoderDecoderFeatureConverter(new EncoderDecoderFeatureOptions(6, 4) { Pack = false }).Convert(SeqioExamples);
        using var scope = torch.NewDisposeScope();
        var batch = EncoderDecoderFeatureConverter.ToTensors(rows);
        Assert.Equal([2L, 6], batch.EncoderTokens.shape);
        Assert.Equal([2L, 4], batch.DecoderTargets.shape);
        Assert.Equal(torch.ScalarType.Int64, batch.DecoderLossWeights.dtype);
        Assert.Equal([8L, 4, 9, 3, 1, 0], batch.EncoderTokens[1].data<long>().ToArray());
        Assert.Equal([0L, 4, 0, 0], batch.DecoderTokens[1].data<long>().ToArray());
        Assert.Equal([1L, 1, 1, 1, 1, 0], batch.EncoderSegmentIds[1].data<long>().ToArray());
        Assert.Equal([0L, 1, 2, 0], batch.DecoderPositions[0].data<long>().ToArray());
        Assert.Equal([1L, 1, 1, 0], batch.DecoderSegmentIds[0].data<long>().ToArray());
        Assert.Equal([3L, 9, 1, 0], batch.DecoderTargets[0].data<long>().ToArray());
        Assert.Equal(5L, batch.DecoderLossWeights.sum().item<long>());
        Assert.Equal([0L, 1, 2, 3, 4, 0], batch.EncoderPositions[1].data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => EncoderDecoderFeatureConverter.ToTensors([]));
    }
}
