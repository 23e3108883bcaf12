using TorchSharp;

namespace Loom.Data.FeatureConverters;

/// <summary>
/// Greedy next-fit over rows, shared by the feature converters (seqio's non-custom-op packer): the
/// current row takes the next example if packing is on and the example fits in every sequence of the
/// row, else a new row is opened. Rows are never revisited, so examples keep their input order.
/// </summary>
/// <typeparam name="TRow">The row being filled (one builder per model sequence).</typeparam>
internal sealed class NextFitPacker<TRow>(bool pack, Func<TRow> newRow) where TRow : class
{
    private readonly List<TRow> _rows = [];
    private TRow? _current;
    private int _segments;

    /// <summary>The rows opened so far, in order.</summary>
    public IReadOnlyList<TRow> Rows => _rows;

    /// <summary>
    /// The row that takes the next example and the segment id (1, 2, ...) the example gets there; the
    /// same id on every sequence of the row, so encoder segment k and decoder segment k are one example.
    /// </summary>
    /// <param name="fits">Whether the example fits in a row's free space.</param>
    public (TRow Row, int SegmentId) Place(Func<TRow, bool> fits)
    {
        if (_current is null || !pack || !fits(_current))
        {
            _current = newRow();
            _rows.Add(_current);
            _segments = 0;
        }
        return (_current, ++_segments);
    }
}

/// <summary>
/// One row of decoder features (seqio's <c>decoder_*</c>) filled left to right, one segment at a time.
/// </summary>
internal sealed class DecoderRowBuilder
{
    private readonly int[] _tokens, _targets, _segmentIds, _positions, _lossWeights, _causalAttention;
    private readonly int _startId;
    private int _used;

    public DecoderRowBuilder(int length, int startId, int padId)
    {
        _tokens = new int[length];
        _targets = new int[length];
        Array.Fill(_tokens, padId);
        Array.Fill(_targets, padId);
        _segmentIds = new int[length];
        _positions = new int[length];
        _lossWeights = new int[length];
        _causalAttention = new int[length];
        _startId = startId;
    }

    /// <summary>Positions not yet used.</summary>
    public int Free => _targets.Length - _used;

    /// <summary>
    /// Appends <paramref name="sequence"/> as segment <paramref name="segmentId"/>: it becomes the
    /// targets; the inputs are the targets shifted right within the segment, with the start id first
    /// (seqio's <c>autoregressive_inputs</c>); positions count from 0.
    /// </summary>
    /// <param name="sequence">The segment's target tokens; at most <see cref="Free"/> of them.</param>
    /// <param name="segmentId">The segment's id in the row, from 1.</param>
    /// <param name="lossStart">Loss weight is 1 from this position of the segment on (0: the whole segment).</param>
    /// <param name="bidirectionalPrefix">Causal attention is 1 on this many leading positions of the segment (0: none).</param>
    public void Add(ReadOnlySpan<int> sequence, int segmentId, int lossStart = 0, int bidirectionalPrefix = 0)
    {
        for (int j = 0; j < sequence.Length; j++)
        {
            int t = _used + j;
            _targets[t] = sequence[j];
            _tokens[t] = j == 0 ? _startId : sequence[j - 1];
            _segmentIds[t] = segmentId;
            _positions[t] = j;
            _lossWeights[t] = j >= lossStart ? 1 : 0;
            _causalAttention[t] = j < bidirectionalPrefix ? 1 : 0;
        }
        _used += sequence.Length;
    }

    public DecoderRow ToDecoderRow() => new(_tokens, _targets, _segmentIds, _positions, _lossWeights);

    public PrefixLmRow ToPrefixLmRow() => new(_tokens, _targets, _segmentIds, _positions, _lossWeights, _causalAttention);
}

/// <summary>One row of encoder features (seqio's <c>encoder_*</c>) filled left to right, one segment at a time.</summary>
internal sealed class EncoderRowBuilder
{
    private readonly int[] _tokens, _segmentIds, _positions;
    private int _used;

    public EncoderRowBuilder(int length, int padId)
    {
        _tokens = new int[length];
        Array.Fill(_tokens, padId);
        _segmentIds = new int[length];
        _positions = new int[length];
    }

    /// <summary>Positions not yet used.</summary>
    public int Free => _tokens.Length - _used;

    /// <summary>Appends <paramref name="sequence"/> (at most <see cref="Free"/> tokens) as segment <paramref name="segmentId"/>.</summary>
    public void Add(ReadOnlySpan<int> sequence, int segmentId)
    {
        for (int j = 0; j < sequence.Length; j++)
        {
            int t = _used + j;
            _tokens[t] = sequence[j];
            _segmentIds[t] = segmentId;
            _positions[t] = j;
        }
        _used += sequence.Length;
    }

    public EncoderRow ToEncoderRow() => new(_tokens, _segmentIds, _positions);
}

/// <summary>Checks and tensor stacking shared by the feature converters.</summary>
internal static class FeatureRows
{
    /// <summary>Throws when <paramref name="tokens"/> holds a negative id.</summary>
    public static void RequireNonNegative(int[] tokens, string what, int index, string parameterName)
    {
        foreach (int id in tokens)
            if (id < 0) throw new ArgumentException($"{what} of example {index} contain the negative token id {id}", parameterName);
    }

    /// <summary>The number of segments in a row: the largest segment id.</summary>
    public static int SegmentCount(int[] segmentIds)
    {
        int max = 0;
        foreach (int s in segmentIds) max = Math.Max(max, s);
        return max;
    }

    /// <summary>
    /// Throws unless every feature of every row has the length of the first row's first feature, which it returns.
    /// </summary>
    public static int RequireSameLength<TRow>(IReadOnlyList<TRow> rows, string parameterName, params Func<TRow, int[]>[] features)
    {
        ArgumentNullException.ThrowIfNull(rows, parameterName);
        if (rows.Count == 0) throw new ArgumentException("a batch needs at least one row", parameterName);
        int length = features[0](rows[0]).Length;
        foreach (var row in rows)
            foreach (var feature in features)
                if (feature(row).Length != length)
                    throw new ArgumentException($"every row's features must have length {length}", parameterName);
        return length;
    }

    /// <summary>One feature of every row as an int64 tensor of shape (B, L), in the current dispose scope.</summary>
    public static torch.Tensor Stack<TRow>(IReadOnlyList<TRow> rows, Func<TRow, int[]> feature, int length)
    {
        var data = new long[rows.Count * length];
        for (int b = 0; b < rows.Count; b++)
        {
            var values = feature(rows[b]);
            for (int t = 0; t < length; t++) data[b * length + t] = values[t];
        }
        return torch.tensor(data, [rows.Count, length], torch.int64); // (B, L)
    }
}
