namespace Loom.Data;

/// <summary>
/// A counter-based random generator: the n-th draw of a stream is a pure function of (key, n), so any
/// draw can be made without making the ones before it and nothing is carried between calls.
/// </summary>
/// <remarks>Draw n of key k is SplitMix64's n-th output from state k (Steele, Lea and Flood, 2014).</remarks>
internal static class CounterRng
{
    private const ulong Gamma = 0x9E3779B97F4A7C15;

    /// <summary>SplitMix64's step: add the golden-ratio increment, then the finalizing mix.</summary>
    internal static ulong Mix(ulong z)
    {
        z += Gamma;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    /// <summary>The key of an independent stream for one purpose (a domain constant) and one index (e.g. the epoch).</summary>
    internal static ulong Key(ulong seed, ulong purpose, ulong index) => Mix(Mix(seed ^ Mix(purpose)) ^ index);

    /// <summary>The n-th 64-bit draw of the stream with the given key.</summary>
    internal static ulong At(ulong key, ulong counter) => Mix(key + counter * Gamma);

    /// <summary>
    /// An unbiased integer in <c>[0, bound)</c>, a pure function of (key, counter), by Lemire's
    /// multiply-and-reject; the rare rejections draw again from a sub-stream of that counter.
    /// </summary>
    internal static ulong Below(ulong key, ulong counter, ulong bound)
    {
        ulong sub = Mix(key ^ Mix(counter));
        ulong threshold = (0 - bound) % bound;
        for (ulong attempt = 0; ; attempt++)
        {
            ulong high = Math.BigMul(At(sub, attempt), bound, out ulong low);
            if (low >= threshold) return high;
        }
    }
}
