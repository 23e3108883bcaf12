using TorchSharp;

namespace Loom.Data;

/// <summary>
/// Cuts a token stream into language-model batches, PaLM style: the stream is split into rows of
/// <c>T + 1</c> consecutive tokens with stride <c>T</c> (so every token after the first is a target
/// once per epoch); inputs are a row's first <c>T</c> tokens and targets its last <c>T</c>.
/// </summary>
/// <remarks>
/// The batch for a step is a pure function of (seed, step): the training sample <c>step * B + b</c>
/// lies in epoch <c>sample / RowCount</c> at position <c>sample % RowCount</c> of that epoch's
/// permutation of rows, which, like the epoch's random start offset, is drawn from a counter-based
/// generator keyed by (seed, epoch). So batch k is made without making batches 0..k-1, and a resumed
/// run sees exactly the batches an uninterrupted run would. Batches may straddle an epoch boundary.
/// With data parallelism over W ranks, rank r's row b of step k is global sample <c>(k * B + b) * W + r</c>,
/// so the ranks' batches together form one global batch of <c>B * W</c> rows, and over an epoch the
/// ranks see disjoint rows that cover it exactly.
/// Instances are safe to use from several threads.
/// </remarks>
public sealed class LmBatcher : ITrainingBatches
{
    // Domain constants that separate the generator streams for permutations and offsets.
    private const ulong PermutationPurpose = 0x7065726D; // "perm"
    private const ulong OffsetPurpose = 0x6F666673;      // "offs"

    private readonly TokenStream _tokens;
    private readonly int _slack;
    private EpochOrder? _lastOrder; // memo of the last epoch's permutation; any value is recomputable

    /// <summary>Creates a batcher.</summary>
    /// <param name="tokens">The token stream.</param>
    /// <param name="sequenceLength">T: tokens per row of inputs (and of targets).</param>
    /// <param name="batchSize">B: rows per batch.</param>
    /// <param name="seed">The seed of the row order and offsets.</param>
    /// <param name="rank">This data-parallel rank, in <c>[0, worldSize)</c>.</param>
    /// <param name="worldSize">The number of data-parallel ranks, positive.</param>
    /// <exception cref="ArgumentOutOfRangeException">T, B or the world size is not positive, or the rank is out of range.</exception>
    /// <exception cref="ArgumentException">The stream is shorter than one row of T + 1 tokens.</exception>
    public LmBatcher(TokenStream tokens, int sequenceLength, int batchSize, ulong seed, int rank = 0, int worldSize = 1)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (sequenceLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, $"sequence length must be positive, got {sequenceLength}");
        if (batchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"batch size must be positive, got {batchSize}");
        if (worldSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"world size must be positive, got {worldSize}");
        if ((uint)rank >= (uint)worldSize)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {worldSize}), got {rank}");
        if (tokens.Length < (long)sequenceLength + 1)
            throw new ArgumentException(
                $"the token stream has {tokens.Length} tokens, fewer than one row of sequence length + 1 = {(long)sequenceLength + 1}; use more text or a shorter sequence length",
                nameof(tokens));
        _tokens = tokens;
        SequenceLength = sequenceLength;
        BatchSize = batchSize;
        Seed = seed;
        Rank = rank;
        WorldSize = worldSize;
        RowCount = (tokens.Length - 1) / sequenceLength;
        // Tokens left over after the rows; each epoch starts its rows at a random offset in [0, slack].
        _slack = tokens.Length - 1 - RowCount * sequenceLength;
    }

    /// <summary>T: tokens per row of inputs and of targets.</summary>
    public int SequenceLength { get; }

    /// <summary>B: rows per batch.</summary>
    public int BatchSize { get; }

    /// <summary>The seed of the row order and offsets.</summary>
    public ulong Seed { get; }

    /// <summary>This data-parallel rank.</summary>
    public int Rank { get; }

    /// <summary>The number of data-parallel ranks.</summary>
    public int WorldSize { get; }

    /// <summary>The number of rows per epoch: <c>(tokens - 1) / T</c>.</summary>
    public int RowCount { get; }

    /// <summary>Tokens per training batch: <c>B * T</c>.</summary>
    public int TokensPerBatch => BatchSize * SequenceLength;

    /// <summary>The number of batches <see cref="EvaluationBatches"/> yields at most: <c>ceil(RowCount / B)</c>.</summary>
    public int EvaluationBatchCount => (RowCount + BatchSize - 1) / BatchSize;

    /// <summary>Says which row of the stream fills row <paramref name="index"/> of the batch for <paramref name="step"/>.</summary>
    /// <param name="step">The training step, from 0.</param>
    /// <param name="index">The row within the batch, in <c>[0, B)</c>.</param>
    /// <returns>The epoch, row index and start offset.</returns>
    public BatchRow RowAt(long step, int index)
    {
        long maxStep = long.MaxValue / ((long)BatchSize * WorldSize) - 1;
        if (step < 0 || step > maxStep)
            throw new ArgumentOutOfRangeException(nameof(step), step, $"step must be in [0, {maxStep}], got {step}");
        if ((uint)index >= (uint)BatchSize)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"row index must be in [0, {BatchSize}), got {index}");
        long sample = (step * BatchSize + index) * WorldSize + Rank;
        long epoch = sample / RowCount;
        var order = OrderOf(epoch);
        int row = order.Rows[(int)(sample % RowCount)];
        return new BatchRow(epoch, row, order.Offset + (long)row * SequenceLength);
    }

    /// <summary>
    /// Makes the training batch for a step, on the CPU. The tensors are moved to the caller's dispose
    /// scope (or left to the caller to dispose where there is none).
    /// </summary>
    /// <param name="step">The training step, from 0.</param>
    /// <returns>Inputs and targets, int64 of shape (B, T); <c>Targets[b, t] = Inputs[b, t + 1]</c> for t &lt; T - 1.</returns>
    public (torch.Tensor Inputs, torch.Tensor Targets) GetBatch(long step)
    {
        var starts = new long[BatchSize];
        for (int b = 0; b < BatchSize; b++) starts[b] = RowAt(step, b).Start;
        return MakeBatch(starts);
    }

    /// <inheritdoc />
    FeatureBatch ITrainingBatches.GetBatch(long step)
    {
        var (inputs, targets) = GetBatch(step);
        return FeatureBatch.Decoder(inputs, targets);
    }

    /// <summary>
    /// Yields fixed, ordered, non-overlapping batches over the whole stream for held-out evaluation:
    /// rows 0, 1, 2, ... starting at token 0, B per batch, the last batch possibly smaller. Independent
    /// of the seed. Each batch's tensors are moved to the scope that is current when it is yielded.
    /// </summary>
    /// <param name="maxBatches">The most batches to yield (positive); <see cref="EvaluationBatchCount"/> covers the stream.</param>
    /// <returns>Inputs and targets, int64 of shape (b, T) with b = B except perhaps in the last batch.</returns>
    public IEnumerable<(torch.Tensor Inputs, torch.Tensor Targets)> EvaluationBatches(int maxBatches)
    {
        if (maxBatches <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxBatches), maxBatches, $"the number of evaluation batches must be positive, got {maxBatches}");
        return Iterate();

        IEnumerable<(torch.Tensor, torch.Tensor)> Iterate()
        {
            int batches = Math.Min(maxBatches, EvaluationBatchCount);
            for (int k = 0; k < batches; k++)
            {
                int first = k * BatchSize;
                var starts = new long[Math.Min(BatchSize, RowCount - first)];
                for (int b = 0; b < starts.Length; b++) starts[b] = (long)(first + b) * SequenceLength;
                yield return MakeBatch(starts);
            }
        }
    }

    private (torch.Tensor Inputs, torch.Tensor Targets) MakeBatch(long[] starts)
    {
        int t = SequenceLength;
        ReadOnlySpan<int> tokens = _tokens.Tokens.Span;
        var inputs = new long[starts.Length * t];
        var targets = new long[starts.Length * t];
        for (int b = 0; b < starts.Length; b++)
        {
            ReadOnlySpan<int> row = tokens.Slice(checked((int)starts[b]), t + 1);
            for (int i = 0; i < t; i++)
            {
                inputs[b * t + i] = row[i];
                targets[b * t + i] = row[i + 1];
            }
        }
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(inputs, [starts.Length, t], torch.int64);  // (B, T)
        var y = torch.tensor(targets, [starts.Length, t], torch.int64); // (B, T)
        return (x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }

    private EpochOrder OrderOf(long epoch)
    {
        var last = Volatile.Read(ref _lastOrder);
        if (last is not null && last.Epoch == epoch) return last;
        var order = new EpochOrder(epoch, Permutation(epoch), Offset(epoch));
        Volatile.Write(ref _lastOrder, order);
        return order;
    }

    /// <summary>Fisher-Yates shuffle of the row indices, each swap drawn from (seed, epoch, position).</summary>
    private int[] Permutation(long epoch)
    {
        ulong key = CounterRng.Key(Seed, PermutationPurpose, (ulong)epoch);
        var rows = new int[RowCount];
        for (int i = 0; i < rows.Length; i++) rows[i] = i;
        for (int i = rows.Length - 1; i > 0; i--)
        {
            int j = (int)CounterRng.Below(key, (ulong)i, (ulong)i + 1);
            (rows[i], rows[j]) = (rows[j], rows[i]);
        }
        return rows;
    }

    private int Offset(long epoch) =>
        _slack == 0 ? 0 : (int)CounterRng.Below(CounterRng.Key(Seed, OffsetPurpose, (ulong)epoch), 0, (ulong)_slack + 1);

    private sealed record EpochOrder(long Epoch, int[] Rows, int Offset);
}
