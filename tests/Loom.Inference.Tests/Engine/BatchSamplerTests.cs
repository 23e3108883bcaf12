using Loom.Data;
using Loom.Inference.Constraints;
using Loom.Inference.Engine;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

/// <summary>The batched on-device sampler held to the per-row reference, <see cref="RequestSampler.Next"/>.</summary>
public class BatchSamplerTests
{
    private static readonly ByteVocabulary Bytes = new();

    /// <summary>Every kind of row the engine meets, in one batch.</summary>
    private static readonly SamplingOptions[] Rows =
    [
        new() { Temperature = 0 },
        new() { Temperature = 0, FrequencyPenalty = 0.7, PresencePenalty = 0.3, LogProbs = 2 },
        new() { Temperature = 1, Seed = 1 },
        new() { Temperature = 0.7, TopK = 5, Seed = 2 },
        new() { Temperature = 1.3, TopP = 0.8, Seed = 3, LogProbs = 0 },
        new() { Temperature = 1, TopK = 40, TopP = 0.95, Seed = 4, FrequencyPenalty = 0.5 },
        new() { Temperature = 2, Seed = 5, PresencePenalty = 1.5, LogProbs = 5 },
        new() { Temperature = 1, TopP = 0.5, Seed = 6 },
    ];

    /// <summary>Allows only ids ≡ k (mod 3), k advancing with every accepted token; records what it accepted.</summary>
    private sealed class ModuloConstraint : ITokenConstraint
    {
        public List<int> Accepted { get; } = [];

        public bool IsComplete => true;

        public bool CanContinue => true;

        public void FillAllowed(Span<bool> allowed)
        {
            for (int i = 0; i < allowed.Length; i++) allowed[i] = i % 3 == Accepted.Count % 3;
        }

        public void Advance(int token)
        {
            Assert.Equal(Accepted.Count % 3, token % 3);
            Accepted.Add(token);
        }
    }

    private static Tensor RandomLogits(Generator generator, int rows) => randn(rows, Bytes.Size + 3, generator: generator) * 3; // (N, V): 3 ids past the vocabulary

    [Fact]
    public void GreedyAndSeededSamplingGiveTheReferenceTokensAndLogProbs()
    {
        using var generator = new Generator(31);
        var reference = Rows.Select(o => new RequestSampler(o, Bytes)).ToList();
        var batched = Rows.Select(o => new RequestSampler(o, Bytes)).ToList();
        try
        {
            var differentDraws = 0;
            for (int step = 0; step < 30; step++)
            {
                using var logits = RandomLogits(generator, Rows.Length);                              // (N, V)
                var (tokens, logProbs) = BatchSampler.Sample(logits, batched, Bytes);
                for (int b = 0; b < Rows.Length; b++)
                {
                    var (token, logProb) = reference[b].Next(logits[b]);
                    Assert.Equal(token, tokens[b]);
                    Assert.InRange(tokens[b], 0, Bytes.Size - 1);
                    Assert.Equal(logProb is null, logProbs[b] is null);
                    if (logProb is null) continue;
                    Assert.Equal(logProb.LogProb, logProbs[b]!.LogProb, 5);
                    Assert.Equal(logProb.Top.Select(t => t.Token), logProbs[b]!.Top.Select(t => t.Token));
                    Assert.Equal(logProb.Top.Select(t => t.LogProb), logProbs[b]!.Top.Select(t => t.LogProb), (x, y) => Math.Abs(x - y) < 1e-5);
                }
                if (tokens[2] != logits[2].narrow(0, 0, Bytes.Size).argmax().item<long>()) differentDraws++;
            }
            Assert.True(differentDraws > 0, "the seeded row never left the argmax: nothing was sampled");
        }
        finally
        {
            foreach (var s in reference.Concat(batched)) s.Dispose();
        }
    }

    [Fact]
    public void ConstrainedRowsSampleOnlyAllowedTokensAndAdvanceAsTheReferenceDoes()
    {
        using var generator = new Generator(37);
        var options = new SamplingOptions[] { new() { Temperature = 0 }, new() { Temperature = 1, Seed = 9 }, new() { Temperature = 1, Seed = 10 } };
        var referenceConstraints = options.Select(_ => new ModuloConstraint()).ToList();
        var batchedConstraints = options.Select(_ => new ModuloConstraint()).ToList();
        // Row 2 is unconstrained: the mask must leave it alone.
        var reference = options.Select((o, i) => new RequestSampler(o, Bytes, i < 2 ? referenceConstraints[i] : null)).ToList();
        var batched = options.Select((o, i) => new RequestSampler(o, Bytes, i < 2 ? batchedConstraints[i] : null)).ToList();
        try
        {
            for (int step = 0; step < 12; step++)
            {
                using var logits = RandomLogits(generator, options.Length);
                var (tokens, _) = BatchSampler.Sample(logits, batched, Bytes);
                for (int b = 0; b < options.Length; b++) Assert.Equal(reference[b].Next(logits[b]).Token, tokens[b]);
            }
            for (int b = 0; b < 2; b++)
            {
                Assert.Equal(12, batchedConstraints[b].Accepted.Count);
                Assert.Equal(referenceConstraints[b].Accepted, batchedConstraints[b].Accepted);
            }
        }
        finally
        {
            foreach (var s in reference.Concat(batched)) s.Dispose();
        }
    }

    [Fact]
    public void SeededDrawsFollowTheSoftmax()
    {
        // One row, four ids with probabilities 0.1, 0.2, 0.3, 0.4: 4,000 seeds, each drawing once.
        var vocabulary = new PieceVocabulary(["a", "b"]); // 4 ids with EOS and PAD
        using var logits = tensor(new[] { 0.1f, 0.2f, 0.3f, 0.4f }).log().unsqueeze(0);          // (1, 4)
        var counts = new int[4];
        for (int seed = 0; seed < 4000; seed++)
        {
            using var sampler = new RequestSampler(new SamplingOptions { Temperature = 1, Seed = seed }, vocabulary);
            counts[BatchSampler.Sample(logits, [sampler], vocabulary).Tokens[0]]++;
        }
        for (int i = 0; i < 4; i++) Assert.InRange(counts[i] / 4000.0, 0.1 * (i + 1) - 0.03, 0.1 * (i + 1) + 0.03);
    }
}
