using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Kernels;

/// <summary>
/// A decode step's attention on the CPU, one query per row and head, as a loop on the calling thread: over a paged
/// KV cache read in place (<see cref="Paged"/>, for an inference engine's block pools), where a tensor path would first
/// gather every row's blocks into one (B, Hkv, S, Dh) copy per layer and mask the rows' different lengths. It agrees
/// with libtorch's <c>scaled_dot_product_attention</c> over the gathered keys to rounding (the tests' reference).
/// </summary>
public static class OneQueryAttention
{
    /// <summary>
    /// Whether <see cref="Paged"/> takes these: queries (B, H, 1, Dh) and pools (blocks, Hkv, Bs, Dh), all contiguous
    /// float32 on the CPU and recording no gradient, H a multiple of Hkv, and at most about 2^20 multiply-adds in all
    /// (<paramref name="totalKeys"/> keys over the rows; longer contexts are worth libtorch's threads).
    /// </summary>
    public static bool TakesPaged(Tensor queries, Tensor keyPool, Tensor valuePool, long totalKeys)
    {
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(keyPool);
        ArgumentNullException.ThrowIfNull(valuePool);
        if (queries.dim() != 4 || keyPool.dim() != 4 || valuePool.dim() != 4 || queries.size(2) != 1) return false;
        if (!DecodeKernels.Takes(queries, keyPool, valuePool)) return false;
        if (keyPool.size(3) != queries.size(3) || valuePool.size(3) != queries.size(3) || keyPool.size(1) != valuePool.size(1)) return false;
        if (queries.size(1) % keyPool.size(1) != 0) return false;
        return queries.size(1) * queries.size(3) * totalKeys <= DecodeKernels.OneQueryMaxWork;
    }

    /// <summary>
    /// softmax(q kᵀ/√Dh) v for queries (B, H, 1, Dh) over a paged cache: row b attends to positions 0..lengths[b]-1 of
    /// its sequence, position j in block <c>blockIds[b][j / Bs]</c> at offset j mod Bs of the pools, (blocks, Hkv, Bs, Dh);
    /// each K/V head serves H/Hkv query heads. (B, H, 1, Dh) out.
    /// </summary>
    /// <exception cref="NotSupportedException">The operands are not what <see cref="TakesPaged"/> takes.</exception>
    /// <exception cref="ArgumentException">A row's length is not positive, or its blocks do not cover it.</exception>
    public static Tensor Paged(Tensor queries, Tensor keyPool, Tensor valuePool, IReadOnlyList<IReadOnlyList<int>> blockIds, IReadOnlyList<int> lengths)
    {
        ArgumentNullException.ThrowIfNull(blockIds);
        ArgumentNullException.ThrowIfNull(lengths);
        if (!TakesPaged(queries, keyPool, valuePool, lengths.Sum(l => (long)l)))
            throw new NotSupportedException($"one-query paged attention takes contiguous float32 CPU queries (B, H, 1, Dh) and pools (blocks, Hkv, Bs, Dh) without gradient; got queries [{string.Join(", ", queries.shape)}] {queries.dtype}, pools [{string.Join(", ", keyPool.shape)}] {keyPool.dtype} on {keyPool.device_type}");
        long rows = queries.size(0), blockSize = keyPool.size(2), blocks = keyPool.size(0);
        if (blockIds.Count != rows || lengths.Count != rows) throw new ArgumentException($"give one block list and one length per query row ({rows}); got {blockIds.Count} and {lengths.Count}");
        for (int b = 0; b < rows; b++)
        {
            if (lengths[b] <= 0) throw new ArgumentException($"row {b}: length {lengths[b]} must be positive (the new token's own key is cached first)", nameof(lengths));
            long needed = (lengths[b] + blockSize - 1) / blockSize;
            if (blockIds[b].Count < needed) throw new ArgumentException($"row {b}: {lengths[b]} positions need {needed} blocks of {blockSize}; the row has {blockIds[b].Count}", nameof(blockIds));
            for (int j = 0; j < needed; j++)
                if ((uint)blockIds[b][j] >= (ulong)blocks) throw new ArgumentException($"row {b}: block id {blockIds[b][j]} is outside the pool's {blocks} blocks", nameof(blockIds));
        }
        return DecodeKernels.AttendOnePaged(queries, keyPool, valuePool, blockIds, lengths, 1 / Math.Sqrt(queries.size(3)));
    }
}
