using Loom.Inference.Speculative;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Speculative;

/// <summary>
/// The accept/reject rule on given distributions: over many seeded draws, the tokens it emits must follow the target's
/// distribution p whatever the draft's q (a chi-square test at significance 0.001 with fixed seeds, so the outcome is
/// deterministic), and the same statistic must tell p from q apart, so a rule that leaked q would fail.
/// </summary>
public class SpeculativeSamplingTests
{
    private const int Draws = 20_000;
    private static readonly double[] P0 = [0.30, 0.25, 0.20, 0.15, 0.07, 0.03];
    private static readonly double[] P1 = [0.05, 0.05, 0.10, 0.20, 0.25, 0.35];
    private static readonly double[] Q0 = [0.05, 0.10, 0.40, 0.15, 0.25, 0.05];
    private static readonly double[] Q1 = [0.40, 0.20, 0.10, 0.10, 0.10, 0.10];

    private static Tensor Rows(params double[][] rows) => tensor(rows.SelectMany(r => r).Select(v => (float)v).ToArray()).view(rows.Length, -1); // (R, V)

    private static int DrawFrom(double[] q, Generator generator) =>
        (int)multinomial(tensor(q.Select(v => (float)v).ToArray()).unsqueeze(0), 1, generator: generator).item<long>();

    [Fact]
    public void GreedyAcceptsTheMatchingPrefixThenTakesTheTargetsToken()
    {
        Assert.Equal(new Verdict(2, 9), SpeculativeSampling.Greedy([5, 7, 9, 2], [5, 7, 3]));
        Assert.Equal(new Verdict(3, 2), SpeculativeSampling.Greedy([5, 7, 3, 2], [5, 7, 3])); // all accepted: the bonus token
        Assert.Equal(new Verdict(0, 4), SpeculativeSampling.Greedy([4, 1], [6]));
        Assert.Equal(new Verdict(0, 4), SpeculativeSampling.Greedy([4], []));
        Assert.Throws<ArgumentException>(() => SpeculativeSampling.Greedy([4], [1]));
    }

    [Fact]
    public void TokensDrawnFromTheDraftComeOutDistributedAsTheTarget()
    {
        using var generator = Seeded.Generator(2024);
        var counts = new long[P0.Length];
        int accepted = 0;
        for (int i = 0; i < Draws; i++)
        {
            using var scope = NewDisposeScope();
            int draft = DrawFrom(Q0, generator);
            var verdict = SpeculativeSampling.Sample(Rows(P0, P1), Rows(Q0), [draft], generator);
            counts[verdict.Accepted == 1 ? draft : verdict.Next]++;
            accepted += verdict.Accepted;
        }
        AssertFollows(P0, counts);
        AssertDoesNotFollow(Q0, counts);
        // Σ min(p, q) = 0.05 + 0.10 + 0.20 + 0.15 + 0.07 + 0.03 = 0.60 is the acceptance probability.
        Assert.InRange(accepted / (double)Draws, 0.58, 0.62);
    }

    [Fact]
    public void DeterministicProposalsComeOutDistributedAsTheTarget()
    {
        // An n-gram proposal is a point mass: accepted with probability p(x), else drawn from p without x.
        using var generator = Seeded.Generator(7);
        var counts = new long[P0.Length];
        for (int i = 0; i < Draws; i++)
        {
            using var scope = NewDisposeScope();
            var verdict = SpeculativeSampling.Sample(Rows(P0, P1), null, [2], generator);
            counts[verdict.Accepted == 1 ? 2 : verdict.Next]++;
        }
        AssertFollows(P0, counts);
    }

    [Fact]
    public void TheTokenAfterAnAcceptedDraftFollowsTheTargetsNextDistribution()
    {
        // k = 2: once x₁ is accepted, the second token (x₂ accepted, or its correction) must follow p₁.
        using var generator = Seeded.Generator(99);
        var first = new long[P0.Length];
        var second = new long[P1.Length];
        for (int i = 0; i < Draws; i++)
        {
            using var scope = NewDisposeScope();
            int[] draft = [DrawFrom(Q0, generator), DrawFrom(Q1, generator)];
            var verdict = SpeculativeSampling.Sample(Rows(P0, P1, P0), Rows(Q0, Q1), draft, generator);
            first[verdict.Accepted >= 1 ? draft[0] : verdict.Next]++;
            if (verdict.Accepted >= 1) second[verdict.Accepted >= 2 ? draft[1] : verdict.Next]++;
        }
        AssertFollows(P0, first);
        AssertFollows(P1, second);
        AssertDoesNotFollow(Q1, second);
    }

    private static void AssertFollows(double[] p, long[] counts)
    {
        var (statistic, df) = ChiSquare.Statistic(counts, p);
        Assert.True(statistic < ChiSquare.Critical(df), $"chi-square {statistic:F1} with {df} degrees of freedom exceeds {ChiSquare.Critical(df):F1}: counts [{string.Join(", ", counts)}] do not follow p");
    }

    private static void AssertDoesNotFollow(double[] q, long[] counts)
    {
        var (statistic, df) = ChiSquare.Statistic(counts, q);
        Assert.True(statistic > ChiSquare.Critical(df), $"chi-square {statistic:F1} cannot tell the counts from q: the test has no power");
    }
}
