using Loom.Data;
using Loom.Data.FeatureConverters;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>The bridge between the data side's prefix-LM packing and the model's bidirectional-prefix attention.</summary>
public class PackedPrefixLmTrainingTests
{
    [Fact]
    public void PackedPrefixLmBatchGivesTheSameLossAsTheUnpackedExamples()
    {
        using var _ = NewDisposeScope();
        var vocabulary = new ByteVocabulary();
        int[] Encode(string s) => [.. vocabulary.Encode(s), vocabulary.EosId];
        var examples = new[] { ("It is a truth", "universally"), ("acknowledged,", "that a single"), ("man in", "possession"), ("of a good", "fortune") }
            .Select(p => (Inputs: Encode(p.Item1), Targets: Encode(p.Item2))).ToList();
        var model = new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
        }, generator: new Generator(5));

        var (packedRows, stats) = new PrefixLmFeatureConverter(PrefixLmFeatureOptions.ForVocabulary(vocabulary, 48)).Convert(examples);
        // 14 + 12 = 26, 14 + 14 = 28, 7 + 11 = 18 and 10 + 8 = 18 tokens: next-fit gives 26 | 28 + 18 | 18 in three rows of 48.
        Assert.Equal(3, packedRows.Count);
        Assert.Equal(90.0 / 144, stats.Efficiency, 10);
        using var packed = PrefixLmFeatureConverter.ToTensors(packedRows);
        var packedLoss = model.Loss(packed.Tokens, packed.Targets, packed.LossWeights,
            new PackedLayout(packed.SegmentIds, packed.Positions, packed.CausalAttention), zLossWeight: 0).CrossEntropy.item<float>();

        // Each example alone, unpadded: target-token-weighted mean of their losses.
        double nats = 0;
        long weight = 0;
        var single = new PrefixLmFeatureConverter(PrefixLmFeatureOptions.ForVocabulary(vocabulary, 48) with { Pack = false });
        foreach (var example in examples)
        {
            var (rows, _) = single.Convert([example]);
            int n = example.Inputs.Length + example.Targets.Length;
            using var alone = PrefixLmFeatureConverter.ToTensors(rows);
            var layout = new PackedLayout(alone.SegmentIds.narrow(1, 0, n), alone.Positions.narrow(1, 0, n), alone.CausalAttention.narrow(1, 0, n));
            nats += model.Loss(alone.Tokens.narrow(1, 0, n), alone.Targets.narrow(1, 0, n), alone.LossWeights.narrow(1, 0, n), layout, 0)
                .CrossEntropy.item<float>() * example.Targets.Length;
            weight += example.Targets.Length;
        }
        Assert.Equal(nats / weight, packedLoss, 4);

        // The bidirectional prefix matters: with a plain causal mask the packed loss differs.
        var causalLoss = model.Loss(packed.Tokens, packed.Targets, packed.LossWeights,
            new PackedLayout(packed.SegmentIds, packed.Positions), zLossWeight: 0).CrossEntropy.item<float>();
        Assert.NotEqual(packedLoss, causalLoss, 3);
    }
}
