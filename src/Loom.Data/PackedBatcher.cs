namespace Loom.Data;

/// <summary>
/// Orders variable-length examples and packs them into rows of at most L tokens, deterministically:
/// which examples fill row b of the batch for step k is a pure function of (seed, k, b, rank, world
/// size), computed from the examples' lengths alone, so batch k is made without making batches
/// 0..k-1 and a resumed run sees exactly the batches an uninterrupted one would.
/// </summary>
/// <remarks>
/// <para>
/// Epoch e shuffles the example indices with a Fisher-Yates permutation drawn from a counter-based
/// generator keyed by (seed, e). Rank r of W takes the permutation's positions r, r + W, r + 2W, ...,
/// so the ranks' examples are disjoint and together cover the epoch. Each rank then packs its
/// examples in that order, greedy next-fit (the packer of seqio and of
/// <see cref="FeatureConverters.DecoderFeatureConverter"/>): an example joins the current row when
/// its length fits in the space left, else a new row begins. Lengths count at most L (longer
/// examples are truncated by the converter); empty examples are left out.
/// </para>
/// <para>
/// A rank's rows run epoch after epoch; row b of step k is its row number k * B + b, which may lie
/// in a later epoch than row 0 of the same batch. Finding the epoch of a row needs the row counts of
/// the epochs before it, which are computed from lengths (no example is read) and remembered.
/// Instances are safe to use from several threads.
/// </para>
/// </remarks>
public sealed class PackedBatcher
{
    private const ulong PermutationPurpose = 0x7061636B; // "pack"

    private readonly int[] _lengths;
    private readonly List<long> _epochStarts = [0]; // _epochStarts[e]: the rank's first row number of epoch e
    private readonly Lock _lock = new();
    private EpochLayout? _last;

    /// <summary>Creates a batcher.</summary>
    /// <param name="lengths">The length in tokens of each example (after conversion, e.g. inputs plus targets).</param>
    /// <param name="sequenceLength">L: tokens per row.</param>
    /// <param name="batchSize">B: rows per batch on this rank.</param>
    /// <param name="seed">The seed of the example order.</param>
    /// <param name="rank">This data-parallel rank, in <c>[0, worldSize)</c>.</param>
    /// <param name="worldSize">The number of data-parallel ranks, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">L, B or the world size is not positive, the rank is out of range, or a length is negative.</exception>
    /// <exception cref="ArgumentException">There are fewer non-empty examples than ranks.</exception>
    public PackedBatcher(IReadOnlyList<int> lengths, int sequenceLength, int batchSize, ulong seed, int rank = 0, int worldSize = 1)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (sequenceLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, $"sequence length must be positive, got {sequenceLength}");
        if (batchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"batch size must be positive, got {batchSize}");
        if (worldSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"world size must be positive, got {worldSize}");
        if ((uint)rank >= (uint)worldSize)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {worldSize}), got {rank}");
        _lengths = new int[lengths.Count];
        int nonEmpty = 0;
        for (int i = 0; i < _lengths.Length; i++)
        {
            if (lengths[i] < 0) throw new ArgumentOutOfRangeException(nameof(lengths), lengths[i], $"example {i} has negative length {lengths[i]}");
            _lengths[i] = Math.Min(lengths[i], sequenceLength);
            if (_lengths[i] > 0) nonEmpty++;
        }
        if (nonEmpty < worldSize)
            throw new ArgumentException($"there are {nonEmpty} non-empty examples, fewer than the {worldSize} ranks; every rank needs at least one", nameof(lengths));
        SequenceLength = sequenceLength;
        BatchSize = batchSize;
        Seed = seed;
        Rank = rank;
        WorldSize = worldSize;
    }

    /// <summary>L: tokens per row.</summary>
    public int SequenceLength { get; }

    /// <summary>B: rows per batch on this rank.</summary>
    public int BatchSize { get; }

    /// <summary>The seed of the example order.</summary>
    public ulong Seed { get; }

    /// <summary>This data-parallel rank.</summary>
    public int Rank { get; }

    /// <summary>The number of data-parallel ranks.</summary>
    public int WorldSize { get; }

    /// <summary>The number of examples, empty ones included.</summary>
    public int ExampleCount => _lengths.Length;

    /// <summary>The examples that fill row <paramref name="index"/> of the batch for <paramref name="step"/>, in packing order.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The step is negative or the index outside <c>[0, B)</c>.</exception>
    public IReadOnlyList<int> RowAt(long step, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if ((uint)index >= (uint)BatchSize)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"row index must be in [0, {BatchSize}), got {index}");
        return Row(checked(step * BatchSize + index));
    }

    /// <summary>The examples of each of the B rows of the batch for <paramref name="step"/>.</summary>
    public IReadOnlyList<IReadOnlyList<int>> Batch(long step) => [.. Enumerable.Range(0, BatchSize).Select(b => RowAt(step, b))];

    /// <summary>The examples of this rank's row number <paramref name="row"/> (counted from the first row of epoch 0).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The row number is negative.</exception>
    public IReadOnlyList<int> Row(long row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        lock (_lock)
        {
            // Extend the known epoch starts until one lies past the row; then find its epoch.
            while (_epochStarts[^1] <= row)
            {
                long epoch = _epochStarts.Count - 1;
                _epochStarts.Add(_epochStarts[^1] + RowsOf(epoch).Rows.Count);
            }
            int e = _epochStarts.BinarySearch(row);
            e = e >= 0 ? e : ~e - 1;
            return RowsOf(e).Rows[(int)(row - _epochStarts[e])];
        }
    }

    /// <summary>This rank's rows of <paramref name="epoch"/>: each the example indices it packs, in order.</summary>
    public IReadOnlyList<IReadOnlyList<int>> EpochRows(long epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        lock (_lock) return RowsOf(epoch).Rows;
    }

    private EpochLayout RowsOf(long epoch)
    {
        if (_last is not null && _last.Epoch == epoch) return _last;
        ulong key = CounterRng.Key(Seed, PermutationPurpose, (ulong)epoch);
        var order = new int[_lengths.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = (int)CounterRng.Below(key, (ulong)i, (ulong)i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var rows = new List<IReadOnlyList<int>>();
        List<int>? current = null;
        int free = 0;
        for (int p = Rank; p < order.Length; p += WorldSize)
        {
            int example = order[p], length = _lengths[example];
            if (length == 0) continue;
            if (current is null || length > free)
            {
                current = [];
                rows.Add(current);
                free = SequenceLength;
            }
            current.Add(example);
            free -= length;
        }
        _last = new EpochLayout(epoch, rows);
        return _last;
    }

    private sealed record EpochLayout(long Epoch, IReadOnlyList<IReadOnlyList<int>> Rows);
}
