using Loom.Data;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

public class PackingTests
{
    [Theory]
    [InlineData(PositionEncoding.Rotary, true)]
    [InlineData(PositionEncoding.Learned, false)]
    public void PackedExamplesScoreAsIfAlone(PositionEncoding positions, bool parallel)
    {
        using var _ = NewDisposeScope();
        var model = Seeded.Model(TinyModels.Decoder(kvHeads: 2, parallel: parallel) with { Positions = positions }, 12);
        int[][] examples = { new[] { 5, 9, 2, 33, 7 }, new[] { 1, 4, 4, 8, 21, 30, 6 }, new[] { 11, 12, 13, 14 } };
        const int rowLength = 20; // 16 tokens of examples + 4 of padding

        // One packed row: inputs are each example minus its last token, targets minus its first.
        var inputs = new long[rowLength];
        var targets = new long[rowLength];
        var segments = new long[rowLength];
        var positionIds = new long[rowLength];
        var weights = new float[rowLength];
        int at = 0;
        for (int e = 0; e < examples.Length; e++)
            for (int i = 0; i + 1 < examples[e].Length; i++, at++)
                (inputs[at], targets[at], segments[at], positionIds[at], weights[at]) = (examples[e][i], examples[e][i + 1], e + 1, i, 1);
        for (; at < rowLength; at++) (inputs[at], targets[at]) = (39, 39); // padding: segment 0, weight 0

        var packing = new PackedLayout(tensor(segments).unsqueeze(0), tensor(positionIds).unsqueeze(0));
        var packedLogits = model.Forward(tensor(inputs).unsqueeze(0), packing); // (1, T, V)
        at = 0;
        foreach (var example in examples)
        {
            int n = example.Length - 1;
            var alone = model.forward(tensor(example.Take(n).Select(x => (long)x).ToArray()).unsqueeze(0)); // (1, n, V)
            var packedSlice = packedLogits.narrow(1, at, n);
            Assert.True(allclose(alone, packedSlice, rtol: 1e-4, atol: 1e-5), $"max diff {(alone - packedSlice).abs().max().item<float>()}");
            at += n;
        }

        // The packed loss is the token-weighted mean of the examples' own losses.
        var packedLoss = model.Loss(FeatureBatch.Decoder(tensor(inputs).unsqueeze(0), tensor(targets).unsqueeze(0), tensor(segments).unsqueeze(0), tensor(positionIds).unsqueeze(0), tensor(weights).unsqueeze(0)), 0).CrossEntropy.item<float>();
        double nats = 0;
        int tokens = 0;
        foreach (var example in examples)
        {
            int n = example.Length - 1;
            var x = tensor(example.Take(n).Select(v => (long)v).ToArray()).unsqueeze(0);
            var y = tensor(example.Skip(1).Select(v => (long)v).ToArray()).unsqueeze(0);
            nats += model.Loss(x, y, 0).CrossEntropy.item<float>() * n;
            tokens += n;
        }
        Assert.Equal(nats / tokens, packedLoss, 4);
    }

    [Fact]
    public void SegmentMaskKeepsExamplesApartAndCausal()
    {
        using var _ = NewDisposeScope();
        var mask = PackedLayout.SegmentCausalMask(tensor(new long[] { 1, 1, 2, 2, 0 }).unsqueeze(0)); // (1, 1, 5, 5)
        bool[,] expected =
        {
            { true, false, false, false, false },
            { true, true, false, false, false },
            { false, false, true, false, false },
            { false, false, true, true, false },
            { false, false, false, false, true }, // padding sees only itself
        };
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
                Assert.Equal(expected[i, j], mask[0, 0, i, j].item<bool>());
    }

    [Fact]
    public void EncoderSegmentMaskKeepsExamplesApartInBothDirections()
    {
        using var _ = NewDisposeScope();
        var mask = PackedLayout.SegmentMask(tensor(new long[] { 1, 1, 2, 2, 0 }).unsqueeze(0), causal: false); // (1, 1, 5, 5)
        bool[,] expected =
        {
            { true, true, false, false, false },
            { true, true, false, false, false },
            { false, false, true, true, false },
            { false, false, true, true, false },
            { false, false, false, false, true }, // padding sees only itself
        };
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
                Assert.Equal(expected[i, j], mask[0, 0, i, j].item<bool>());
    }
}
