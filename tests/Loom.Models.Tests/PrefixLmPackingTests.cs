using Loom.Data;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Prefix-LM attention through <see cref="PackedLayout"/>'s bidirectional prefix (seqio's decoder_causal_attention).</summary>
public class PrefixLmPackingTests
{
    private const long Start = 0, Pad = 39;

    [Fact]
    public void PrefixMaskMatchesTheDefinitionOnAPackedRow()
    {
        using var _ = NewDisposeScope();
        long[] segments = [1, 1, 1, 1, 2, 2, 2, 0];
        long[] prefix = [1, 1, 0, 0, 1, 1, 0, 0];
        var mask = PackedLayout.SegmentCausalMask(tensor(segments).unsqueeze(0), tensor(prefix).unsqueeze(0)); // (1, 1, 8, 8)
        Assert.Equal([1L, 1, 8, 8], mask.shape);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
            {
                bool sameSegment = segments[i] != 0 && segments[i] == segments[j];
                bool expected = (sameSegment && (j <= i || (prefix[i] == 1 && prefix[j] == 1))) || i == j;
                Assert.True(expected == mask[0, 0, i, j].item<bool>(), $"query {i}, key {j}: expected {expected}");
            }
        // Without prefix marks the layout is the plain segment-causal one.
        Assert.True(PackedLayout.SegmentCausalMask(tensor(segments).unsqueeze(0))
            .eq(new PackedLayout(tensor(segments).unsqueeze(0), zeros(1, 8, dtype: int64)).Mask).all().item<bool>());
        Assert.Throws<ArgumentException>(() => new PackedLayout(tensor(segments).unsqueeze(0), zeros(1, 8, dtype: int64), zeros(1, 7, dtype: int64)));
    }

    [Fact]
    public void PrefixPositionsSeeLaterPrefixTokensButNeverTargets()
    {
        using var _ = NewDisposeScope();
        var model = new DecoderLm(TinyModels.Decoder(kvHeads: 2), generator: new Generator(21));
        // Segment 1: positions 0..5, prefix 0..2; segment 2: positions 6..9, prefix 6..7.
        long[] tokens = [Start, 5, 9, 2, 33, 7, Start, 11, 12, 13];
        long[] segments = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2];
        long[] positions = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3];
        long[] prefix = [1, 1, 1, 0, 0, 0, 1, 1, 0, 0];
        var layout = new PackedLayout(tensor(segments).unsqueeze(0), tensor(positions).unsqueeze(0), tensor(prefix).unsqueeze(0));
        Tensor Logits(long[] row) => model.Forward(tensor(row).unsqueeze(0), layout)[0]; // (T, V)
        var reference = Logits(tokens);

        bool[] Changed(int at)
        {
            var edited = (long[])tokens.Clone();
            edited[at] = 17;
            var logits = Logits(edited);
            return Enumerable.Range(0, tokens.Length).Select(t => !allclose(reference[t], logits[t], rtol: 1e-5, atol: 1e-6)).ToArray();
        }

        // The last prefix token reaches back to the first prefix position (bidirectional prefix) ...
        Assert.Equal([true, true, true, true, true, true, false, false, false, false], Changed(2));
        // ... but a target token reaches only itself and later positions of its own segment.
        Assert.Equal([false, false, false, false, true, true, false, false, false, false], Changed(4));
        Assert.Equal([false, false, false, true, true, true, false, false, false, false], Changed(3));
        // The second segment's prefix is bidirectional too and never reaches the first segment.
        Assert.Equal([false, false, false, false, false, false, true, true, true, true], Changed(7));
        Assert.Equal([false, false, false, false, false, false, false, false, true, true], Changed(8));
    }

    [Theory]
    [InlineData(PositionEncoding.Rotary, true)]
    [InlineData(PositionEncoding.Learned, false)]
    public void PackedPrefixLmExamplesScoreAsIfAlone(PositionEncoding positionEncoding, bool parallel)
    {
        using var _ = NewDisposeScope();
        var model = new DecoderLm(TinyModels.Decoder(kvHeads: 2, parallel: parallel) with { Positions = positionEncoding }, generator: new Generator(12));
        (long[] Inputs, long[] Targets)[] examples = [([5, 9, 2], [33, 7, 1]), ([4, 4, 8, 21, 1], [30, 6, 1]), ([11], [12, 13, 14, 1])];
        const int rowLength = 24; // 20 tokens of examples + 4 of padding

        // One packed row laid out as seqio's PrefixLMFeatureConverter does (loss on targets only).
        var row = new Features(rowLength);
        foreach (var (inputs, targets) in examples) row.Add(inputs, targets);
        var packedLayout = row.Layout();
        var packedLogits = model.Forward(row.TokensTensor(), packedLayout); // (1, T, V)
        var packedLoss = model.Loss(row.Batch(), 0).CrossEntropy.item<float>();

        int at = 0;
        double nats = 0;
        double weight = 0;
        foreach (var (inputs, targets) in examples)
        {
            int n = inputs.Length + targets.Length;
            var alone = new Features(n);
            alone.Add(inputs, targets);
            var aloneLayout = alone.Layout();
            var aloneLogits = model.Forward(alone.TokensTensor(), aloneLayout); // (1, n, V)
            var packedSlice = packedLogits.narrow(1, at, n);
            Assert.True(allclose(aloneLogits, packedSlice, rtol: 1e-4, atol: 1e-5), $"max diff {(aloneLogits - packedSlice).abs().max().item<float>()}");
            nats += model.Loss(alone.Batch(), 0).CrossEntropy.item<float>() * targets.Length;
            weight += targets.Length;
            at += n;
        }
        // The packed loss is the target-token-weighted mean of the examples' own losses.
        Assert.Equal(nats / weight, packedLoss, 4);
    }

    /// <summary>A row of prefix-LM features built by hand, as seqio lays them out.</summary>
    private sealed class Features(int length)
    {
        private readonly long[] _tokens = Enumerable.Repeat(Pad, length).ToArray(), _targets = Enumerable.Repeat(Pad, length).ToArray();
        private readonly long[] _segments = new long[length], _positions = new long[length], _prefix = new long[length];
        private readonly float[] _weights = new float[length];
        private int _used, _segmentCount;

        public void Add(long[] inputs, long[] targets)
        {
            long[] sequence = [.. inputs, .. targets];
            _segmentCount++;
            for (int j = 0; j < sequence.Length; j++, _used++)
            {
                _targets[_used] = sequence[j];
                _tokens[_used] = j == 0 ? Start : sequence[j - 1];
                _segments[_used] = _segmentCount;
                _positions[_used] = j;
                _prefix[_used] = j <= inputs.Length ? 1 : 0;
                _weights[_used] = j >= inputs.Length ? 1 : 0;
            }
        }

        public PackedLayout Layout() => new(tensor(_segments).unsqueeze(0), tensor(_positions).unsqueeze(0), tensor(_prefix).unsqueeze(0));

        public Tensor TokensTensor() => tensor(_tokens).unsqueeze(0);   // (1, T)

        public Tensor TargetsTensor() => tensor(_targets).unsqueeze(0); // (1, T)

        public Tensor WeightsTensor() => tensor(_weights).unsqueeze(0); // (1, T)

        /// <summary>The row as the prefix-LM converter's features (with decoder_causal_attention).</summary>
        public FeatureBatch Batch() => new(new Dictionary<string, Tensor>
        {
            [FeatureNames.DecoderInputTokens] = TokensTensor(),
            [FeatureNames.DecoderTargetTokens] = TargetsTensor(),
            [FeatureNames.DecoderSegmentIds] = tensor(_segments).unsqueeze(0),
            [FeatureNames.DecoderPositions] = tensor(_positions).unsqueeze(0),
            [FeatureNames.DecoderCausalAttention] = tensor(_prefix).unsqueeze(0),
            [FeatureNames.DecoderLossWeights] = WeightsTensor(),
        });
    }
}
