using Loom.Data.FeatureConverters;
using TorchSharp;

namespace Loom.Data.Tests.FeatureConverters;

public class SegmentMaskTests
{
    [Fact]
    public void Causal_mask_keeps_segments_apart_and_hides_padding()
    {
        using var scope = torch.NewDisposeScope();
        // Row 0: segments 1 (positions 0-1) and 2 (2-3), one padding position. Row 1: one segment of 5.
        var ids = torch.tensor(new long[] { 1, 1, 2, 2, 0, 1, 1, 1, 1, 1 }, [2, 5], torch.int64);
        var mask = SegmentMask.Causal(ids);
        Assert.Equal([2L, 1, 5, 5], mask.shape);
        Assert.Equal(torch.ScalarType.Bool, mask.dtype);

        // Hand-computed: query row i, key column j.
        bool[,] row0 =
        {
            { true,  false, false, false, false },
            { true,  true,  false, false, false },
            { false, false, true,  false, false },
            { false, false, true,  true,  false },
            { false, false, false, false, false },
        };
        var actual = mask.to_type(torch.int32).data<int>().ToArray();
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
            {
                Assert.Equal(row0[i, j] ? 1 : 0, actual[i * 5 + j]);
                Assert.Equal(j <= i ? 1 : 0, actual[25 + i * 5 + j]); // row 1 is plain causal
            }
    }

    [Fact]
    public void Mask_of_converter_output_matches_segment_rule()
    {
        using var scope = torch.NewDisposeScope();
        var (rows, _) = new DecoderFeatureConverter(new DecoderFeatureOptions(6)).Convert([[5, 1], [6, 7, 1], [8, 1]]);
        var batch = DecoderFeatureConverter.ToTensors(rows);
        var mask = SegmentMask.Causal(batch.SegmentIds).to_type(torch.int32).data<int>().ToArray();
        // Row 0 holds the first two examples (5 tokens); the third does not fit in the 1 left and starts row 1.
        var seg = rows[0].SegmentIds;
        Assert.Equal([1, 1, 2, 2, 2, 0], seg);
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                Assert.Equal(seg[i] != 0 && seg[i] == seg[j] && j <= i ? 1 : 0, mask[i * 6 + j]);
        Assert.Throws<ArgumentException>(() => SegmentMask.Causal(torch.zeros(2, 3, 4, torch.int64)));
        Assert.Throws<ArgumentException>(() => SegmentMask.Causal(torch.zeros(2, 3)));
    }
}
