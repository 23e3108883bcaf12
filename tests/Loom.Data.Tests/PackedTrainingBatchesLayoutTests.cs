using Loom.Data.FeatureConverters;
using Loom.Data.Tasks;
using static TorchSharp.torch;

namespace Loom.Data.Tests;

/// <summary>PackedTrainingBatches for either model family: the same examples per row, as decoder-only or encoder-decoder features.</summary>
public class PackedTrainingBatchesLayoutTests
{
    private static readonly ByteVocabulary Vocabulary = new();

    private static List<Example> Examples(int count)
    {
        var random = new Random(7);
        return [.. Enumerable.Range(0, count).Select(i =>
        {
            int[] inputs = [.. Enumerable.Range(0, random.Next(3, 20)).Select(_ => random.Next(1, 255)), Vocabulary.EosId];
            int[] targets = [.. Enumerable.Range(0, random.Next(1, 6)).Select(_ => random.Next(1, 255)), Vocabulary.EosId];
            return new Example(new Dictionary<string, string>(), new Dictionary<string, int[]> { ["inputs"] = inputs, ["targets"] = targets });
        })];
    }

    [Fact]
    public void EncoderDecoderRowsHoldTheDecoderRowsExamplesSplitIntoInputsAndTargets()
    {
        using var _ = NewDisposeScope();
        var examples = Examples(40);
        var decoder = new PackedTrainingBatches([new PackedComponent("t", examples)], Vocabulary, 32, 4, seed: 3);
        var encoderDecoder = new PackedTrainingBatches([new PackedComponent("t", examples)], Vocabulary, 32, 4, seed: 3, layout: FeatureLayout.EncoderDecoder);
        for (long step = 0; step < 3; step++)
        {
            using var d = decoder.GetBatch(step);
            using var e = encoderDecoder.GetBatch(step);
            Assert.False(d.HasEncoder);
            Assert.True(e.HasEncoder);
            for (int b = 0; b < 4; b++)
            {
                var (_, rowExamples) = encoderDecoder.RowAt(step, b);
                // The encoder holds the row's inputs back to back, the decoder's targets its targets, each per segment.
                int[] expectedInputs = [.. rowExamples.SelectMany(x => x.Inputs)];
                int[] expectedTargets = [.. rowExamples.SelectMany(x => x.Targets)];
                var encoderTokens = e[FeatureNames.EncoderInputTokens][b].data<long>().Select(t => (int)t).ToArray();
                var targets = e.Targets[b].data<long>().Select(t => (int)t).ToArray();
                var weights = e.LossWeights![b].to(float32).data<float>().ToArray();
                Assert.Equal(expectedInputs, encoderTokens.Take(expectedInputs.Length));
                Assert.Equal(expectedTargets, targets.Where((_, i) => weights[i] != 0));
                // The decoder-only row of the same step holds the same targets under its loss weights.
                var decoderTargets = d.Targets[b].data<long>().Select(t => (int)t).ToArray();
                var decoderWeights = d.LossWeights![b].to(float32).data<float>().ToArray();
                Assert.Equal(expectedTargets, decoderTargets.Where((_, i) => decoderWeights[i] != 0));
                // Segment k of the encoder and of the decoder are the same example.
                var encoderSegments = e[FeatureNames.EncoderSegmentIds][b].data<long>().Where(s => s != 0).Distinct();
                var decoderSegments = e.SegmentIds![b].data<long>().Where(s => s != 0).Distinct();
                Assert.Equal(encoderSegments, decoderSegments);
            }
        }
    }
}
