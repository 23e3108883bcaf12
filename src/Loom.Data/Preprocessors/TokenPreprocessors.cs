namespace Loom.Data.Preprocessors;

/// <summary>Small pure preprocessors over one example's tokens, after seqio's.</summary>
public static class TokenPreprocessors
{
    /// <summary>Keeps the first <paramref name="maxLength"/> tokens.</summary>
    /// <param name="tokens">The tokens.</param>
    /// <param name="maxLength">The most tokens to keep, at least 0.</param>
    /// <returns>A new array of <c>min(tokens.Length, maxLength)</c> tokens.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> is negative.</exception>
    public static int[] Truncate(ReadOnlySpan<int> tokens, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        return tokens[..Math.Min(tokens.Length, maxLength)].ToArray();
    }

    /// <summary>Appends the end-of-sequence id (seqio's <c>append_eos</c>).</summary>
    /// <param name="tokens">The tokens.</param>
    /// <param name="eosId">The EOS id, e.g. <see cref="IVocabulary.EosId"/>.</param>
    /// <returns>A new array of <c>tokens.Length + 1</c> tokens ending with <paramref name="eosId"/>.</returns>
    public static int[] AppendEos(ReadOnlySpan<int> tokens, int eosId) => [.. tokens, eosId];

    /// <summary>
    /// Truncates to <c>maxLength - 1</c> tokens, then appends EOS (seqio's <c>append_eos_after_trim</c>),
    /// so the result fits <paramref name="maxLength"/> and always ends with EOS.
    /// </summary>
    /// <param name="tokens">The tokens.</param>
    /// <param name="eosId">The EOS id.</param>
    /// <param name="maxLength">The most tokens in the result, EOS included; at least 1.</param>
    /// <returns>A new array of <c>min(tokens.Length, maxLength - 1) + 1</c> tokens.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> is below 1.</exception>
    public static int[] AppendEosAfterTrim(ReadOnlySpan<int> tokens, int eosId, int maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        return [.. tokens[..Math.Min(tokens.Length, maxLength - 1)], eosId];
    }
}

/// <summary>
/// Splits one token sequence into a prefix (inputs) and the rest (targets) at a random point, for
/// prefix-LM training (T5's <c>prefix_lm</c>, whose <c>random_prefix_noise_mask</c> at its default
/// noise density 0.5 draws the prefix length uniformly from <c>[1, length - 1]</c>).
/// </summary>
public static class PrefixLmSplit
{
    private const ulong SplitPurpose = 0x70726678; // "prfx"

    /// <summary>Splits <paramref name="tokens"/>; the split point is a pure function of (seed, index, length).</summary>
    /// <param name="tokens">The example's tokens.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="exampleIndex">The example's index.</param>
    /// <returns>
    /// Inputs = the first n tokens, targets = the rest, with n uniform in <c>[1, length - 1]</c>, so both
    /// are non-empty when there are at least 2 tokens. As in T5, a single token becomes the target (no
    /// inputs), and no tokens give two empty arrays.
    /// </returns>
    public static (int[] Inputs, int[] Targets) Apply(ReadOnlySpan<int> tokens, ulong seed, long exampleIndex)
    {
        int split = tokens.Length < 2
            ? 0
            : 1 + (int)CounterRng.Below(CounterRng.Key(seed, SplitPurpose, (ulong)exampleIndex), 0, (ulong)tokens.Length - 1);
        return (tokens[..split].ToArray(), tokens[split..].ToArray());
    }
}
