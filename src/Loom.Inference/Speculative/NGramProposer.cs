using static TorchSharp.torch;

namespace Loom.Inference.Speculative;

/// <summary>
/// Prompt lookup decoding (Saxena 2023; vLLM's n-gram speculator): finds the most recent earlier occurrence of the
/// sequence's last n tokens (longest n first, from <see cref="MaxN"/> down to <see cref="MinN"/>) and proposes the
/// tokens that followed it. No model runs, and proposals are deterministic (point masses).
/// </summary>
public sealed class NGramProposer : IDraftProposer
{
    /// <summary>Creates the proposer.</summary>
    /// <param name="maxN">Longest suffix to match.</param>
    /// <param name="minN">Shortest suffix to match.</param>
    /// <exception cref="ArgumentOutOfRangeException">Not 1 ≤ minN ≤ maxN.</exception>
    public NGramProposer(int maxN = 3, int minN = 1)
    {
        if (minN < 1 || maxN < minN) throw new ArgumentOutOfRangeException(nameof(maxN), $"n-gram sizes {minN}..{maxN} must satisfy 1 <= min <= max");
        MaxN = maxN;
        MinN = minN;
    }

    /// <summary>Longest suffix matched.</summary>
    public int MaxN { get; }

    /// <summary>Shortest suffix matched.</summary>
    public int MinN { get; }

    /// <inheritdoc />
    public DraftProposal Propose(IReadOnlyList<int> sequence, int count, SamplingOptions sampling, Generator generator, int vocabularySize)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        var tokens = Lookup(sequence, count);
        return tokens.Count == 0 ? DraftProposal.None : new DraftProposal(tokens, null);
    }

    /// <summary>The tokens that followed the most recent earlier occurrence of the longest matching suffix; empty when none matches.</summary>
    public IReadOnlyList<int> Lookup(IReadOnlyList<int> sequence, int count)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        int length = sequence.Count;
        for (int n = Math.Min(MaxN, length - 1); n >= MinN; n--)
        {
            // An occurrence at start j (j + n ≤ length − 1) is followed by at least one token.
            for (int j = length - n - 1; j >= 0; j--)
            {
                if (!Matches(sequence, j, length - n, n)) continue;
                int from = j + n, take = Math.Min(count, length - from);
                var follow = new int[take];
                for (int i = 0; i < take; i++) follow[i] = sequence[from + i];
                return follow;
            }
        }
        return [];
    }

    private static bool Matches(IReadOnlyList<int> sequence, int a, int b, int n)
    {
        for (int i = 0; i < n; i++)
            if (sequence[a + i] != sequence[b + i]) return false;
        return true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
