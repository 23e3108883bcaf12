namespace Loom.Data;

/// <summary>
/// Chooses which component of a mixture fills each training row: component c with probability
/// <c>rates[c] / sum(rates)</c>, independently per row, as a pure function of (seed, sample index).
/// </summary>
/// <remarks>
/// Each component keeps its own row stream, indexed by the same global sample index and skipped where
/// another component is chosen; so every draw is made without the ones before it, and a resumed run
/// mixes exactly as an uninterrupted one. Over many rows, component c fills a fraction of them that
/// converges to its rate.
/// </remarks>
public sealed class MixtureSampler
{
    private const ulong MixturePurpose = 0x6D697874; // "mixt"
    private readonly double[] _cumulative;
    private readonly ulong _key;

    /// <summary>Creates a sampler.</summary>
    /// <param name="rates">Relative rate of each component; each positive and finite.</param>
    /// <param name="seed">The seed of the choices.</param>
    /// <exception cref="ArgumentException">There are no rates, or one is not positive and finite.</exception>
    public MixtureSampler(IReadOnlyList<double> rates, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(rates);
        if (rates.Count == 0) throw new ArgumentException("a mixture needs at least one component", nameof(rates));
        _cumulative = new double[rates.Count];
        double total = 0;
        for (int i = 0; i < rates.Count; i++)
        {
            if (!(rates[i] > 0) || double.IsInfinity(rates[i]))
                throw new ArgumentException($"rate {i} is {rates[i]}; rates must be positive and finite", nameof(rates));
            total += rates[i];
            _cumulative[i] = total;
        }
        for (int i = 0; i < _cumulative.Length; i++) _cumulative[i] /= total;
        _cumulative[^1] = 1.0;
        _key = CounterRng.Key(seed, MixturePurpose, 0);
    }

    /// <summary>The number of components.</summary>
    public int ComponentCount => _cumulative.Length;

    /// <summary>The component that fills global sample <paramref name="sample"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The sample index is negative.</exception>
    public int ComponentAt(long sample)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sample);
        double u = (CounterRng.At(_key, (ulong)sample) >> 11) * (1.0 / (1UL << 53)); // uniform in [0, 1)
        int c = Array.BinarySearch(_cumulative, u);
        c = c >= 0 ? c + 1 : ~c;
        return Math.Min(c, _cumulative.Length - 1);
    }
}
