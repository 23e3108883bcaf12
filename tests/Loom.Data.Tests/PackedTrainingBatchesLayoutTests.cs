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

    [Fact]
    public void WhereLongInputsStopDoesNotDependOnTheTarget()
    {
        int[] email = [.. Enumerable.Range(0, 300)];
        int[] ham = [1, 2, 3, 9], spam = [4, 5, 6, 7, 9];
        int room = PackedTrainingBatches.TargetsRoom([(email.Length, ham.Length), (email.Length, spam.Length)], 256);
        Assert.Equal(5, room);
        var (hamInputs, hamTargets) = PackedTrainingBatches.Fit(email, ham, 256, room);
        var (spamInputs, spamTargets) = PackedTrainingBatches.Fit(email, spam, 256, room);
        // Both keep the email's last 251 tokens: the label's length cannot be read off where the inputs end.
        Assert.Equal(email[^251..], hamInputs);
        Assert.Equal(email[^251..], spamInputs);
        Assert.Equal(ham, hamTargets);
        Assert.Equal(spam, spamTargets);
        // Without the room each keeps what its own target leaves: the position of the answer gives the answer away.
        Assert.Equal(252, PackedTrainingBatches.Fit(email, ham, 256).Inputs.Length);
        Assert.Equal(251, PackedTrainingBatches.Fit(email, spam, 256).Inputs.Length);
    }

    [Fact]
    public void TheTargetsRoomIsTheLongestTargetWithInputsAtMostHalfTheRow()
    {
        Assert.Equal(0, PackedTrainingBatches.TargetsRoom([(0, 40), (0, 7)], 64));  // language modelling: no inputs, no room
        Assert.Equal(7, PackedTrainingBatches.TargetsRoom([(0, 40), (3, 7)], 64));
        Assert.Equal(32, PackedTrainingBatches.TargetsRoom([(10, 50), (3, 7)], 64)); // capped at half the row
        var (inputs, targets) = PackedTrainingBatches.Fit([1, 2], [3], 64, 32); // short inputs are never cut
        Assert.Equal([1, 2], inputs);
        Assert.Equal([3], targets);
    }
}
