using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>The bridge between the data side's packing and the model's packed attention.</summary>
public class PackedTrainingTests
{
    [Fact]
    public void PackedBatchGivesTheSameLossAsTheUnpackedExamples()
    {
        using var _ = NewDisposeScope();
        var vocabulary = new ByteVocabulary();
        var examples = new[] { "It is a truth", "universally acknowledged,", "that a single man", "in possession", "of a good fortune" }
            .Select(s => vocabulary.Encode(s).Append(vocabulary.EosId).ToArray()).ToList();
        var model = new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
        }, generator: new Generator(3));

        var packedConverter = new DecoderFeatureConverter(DecoderFeatureOptions.ForVocabulary(vocabulary, 48));
        var (packedRows, stats) = packedConverter.Convert(examples);
        // 14 + 26 | 18 + 14 | 18 tokens: greedy next-fit gives 3 rows of 48 for 5 examples.
        Assert.Equal(3, packedRows.Count);
        Assert.Equal(90.0 / 144, stats.Efficiency, 10);
        using var packed = DecoderFeatureConverter.ToTensors(packedRows);
        var packedLoss = model.Loss(packed.Tokens, packed.Targets, packed.LossWeights,
            new PackedLayout(packed.SegmentIds, packed.Positions), zLossWeight: 0).CrossEntropy.item<float>();

        // Each example alone, unpadded: token-weighted mean of their losses.
        double nats = 0;
        long tokens = 0;
        var single = new DecoderFeatureConverter(DecoderFeatureOptions.ForVocabulary(vocabulary, 48) with { Pack = false });
        foreach (var example in examples)
        {
            var (rows, _) = single.Convert(new[] { example });
            int n = example.Length;
            var x = tensor(rows[0].Tokens.Take(n).Select(v => (long)v).ToArray()).unsqueeze(0);  // (1, n)
            var y = tensor(rows[0].Targets.Take(n).Select(v => (long)v).ToArray()).unsqueeze(0); // (1, n)
            nats += model.Loss(x, y, 0).CrossEntropy.item<float>() * n;
            tokens += n;
        }
        Assert.Equal(nats / tokens, packedLoss, 4);
    }
}
