using static TorchSharp.torch;

namespace Loom.Inference.Paging;

/// <summary>
/// The memory of the paged KV cache: per layer, keys and values of shape
/// (NumBlocks, NumKvHeads, BlockSize, HeadDim), addressed through a sequence's <see cref="BlockTable"/>.
/// Allocated once and written in place. The runner calls <see cref="Write"/> for the positions a step
/// computes, then <see cref="Gather"/> for attention; the bookkeeping lives in
/// <see cref="BlockAllocator"/>, which must have the same block count and size.
/// <see cref="Gather"/> is the plain reference path (copy the blocks into one tensor); a
/// paged-attention kernel that reads the blocks in place belongs beside it, tested against it.
/// </summary>
public sealed class PagedKvStore : IDisposable
{
    private readonly Tensor[] keys;   // L x (N, Hkv, Bs, Dh)
    private readonly Tensor[] values; // L x (N, Hkv, Bs, Dh)

    /// <summary>Allocates zeroed storage for <paramref name="numBlocks"/> blocks of <paramref name="blockSize"/> tokens in every layer of <paramref name="layout"/>.</summary>
    public PagedKvStore(KvLayout layout, int numBlocks, int blockSize, Device? device)
    {
        Layout = layout ?? throw new ArgumentNullException(nameof(layout));
        if (numBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(numBlocks), $"kv_cache.num_blocks = {numBlocks} must be positive");
        if (blockSize <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize), $"kv_cache.block_size = {blockSize} must be positive");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        keys = new Tensor[layout.NumLayers];
        values = new Tensor[layout.NumLayers];
        var shape = new long[] { numBlocks, layout.NumKvHeads, blockSize, layout.HeadDim };
        using var scope = NewDisposeScope();
        for (int l = 0; l < layout.NumLayers; l++)
        {
            keys[l] = zeros(shape, layout.DType, device).DetachFromDisposeScope();   // (N, Hkv, Bs, Dh)
            values[l] = zeros(shape, layout.DType, device).DetachFromDisposeScope(); // (N, Hkv, Bs, Dh)
        }
    }

    /// <summary>Allocates the storage that <paramref name="options"/> sizes for keys and values of <paramref name="layout"/>.</summary>
    public PagedKvStore(KvBlockOptions options, KvLayout layout, Device? device)
        : this(layout, (options ?? throw new ArgumentNullException(nameof(options))).ResolveNumBlocks(layout), options.BlockSize, device)
    {
    }

    /// <summary>What each token's keys and values look like.</summary>
    public KvLayout Layout { get; }

    /// <summary>Blocks per layer.</summary>
    public int NumBlocks { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    /// <summary>Layer <paramref name="layer"/>'s key and value pools, (N, Hkv, Bs, Dh) each, for kernels that read blocks in place.</summary>
    internal (Tensor Keys, Tensor Values) Pools(int layer) => (keys[layer], values[layer]);

    /// <summary>Bytes held by all layers' keys and values.</summary>
    public long Bytes => 2L * keys.Sum(k => k.NumberOfElements * k.ElementSize);

    /// <summary>
    /// Writes layer <paramref name="layer"/>'s keys and values for positions
    /// <paramref name="startPosition"/>..startPosition+T-1 of the sequence that <paramref name="table"/>
    /// describes; the tokens must have been appended to the table first. Write only positions the
    /// sequence computes (at or after <see cref="BlockTable.CachedTokenCount"/>), never into blocks
    /// shared from the prefix cache.
    /// </summary>
    /// <param name="layer">Layer index.</param>
    /// <param name="table">The sequence's blocks.</param>
    /// <param name="startPosition">Position of the first written token.</param>
    /// <param name="k">Keys, (Hkv, T, Dh).</param>
    /// <param name="v">Values, (Hkv, T, Dh).</param>
    public void Write(int layer, BlockTable table, int startPosition, Tensor k, Tensor v)
    {
        CheckLayerAndTable(layer, table);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        CheckHeads(k, nameof(k));
        if (!v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"values of shape ({string.Join(", ", v.shape)}) must match keys of shape ({string.Join(", ", k.shape)})", nameof(v));
        int count = (int)k.shape[1];
        if (startPosition < 0 || startPosition + count > table.TokenCount)
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"positions {startPosition}..{startPosition + count - 1} are outside the sequence's {table.TokenCount} tokens; append the tokens to the block table before writing their keys and values");

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // One copy per block the positions touch: a decode step touches one, a prefill T / BlockSize + 1.
        for (int t = 0; t < count;)
        {
            int position = startPosition + t;
            int block = CheckBlock(table.BlockIds[position / BlockSize]);
            int offset = position % BlockSize;
            int take = Math.Min(BlockSize - offset, count - t);
            keys[layer][block].narrow(1, offset, take).copy_(k.narrow(1, t, take));   // (Hkv, take, Dh)
            values[layer][block].narrow(1, offset, take).copy_(v.narrow(1, t, take)); // (Hkv, take, Dh)
            t += take;
        }
    }

    /// <summary>
    /// Returns layer <paramref name="layer"/>'s keys and values of positions 0..length-1 of the sequence,
    /// each a new contiguous (Hkv, length, Dh) tensor in the caller's dispose scope.
    /// </summary>
    public (Tensor Keys, Tensor Values) Gather(int layer, BlockTable table, int length)
    {
        CheckLayerAndTable(layer, table);
        if (length <= 0 || length > table.TokenCount)
            throw new ArgumentOutOfRangeException(nameof(length), $"gather length {length} must be in 1..{table.TokenCount} (the sequence's tokens)");

        using var scope = NewDisposeScope();
        int blockCount = (length + BlockSize - 1) / BlockSize;
        var ids = new long[blockCount];
        for (int b = 0; b < blockCount; b++) ids[b] = CheckBlock(table.BlockIds[b]);
        var index = tensor(ids, device: keys[layer].device);                              // (nb)
        return (Contiguous(keys[layer], index, length).MoveToOuterDisposeScope(), Contiguous(values[layer], index, length).MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in keys.Concat(values)) t.Dispose();
    }

    /// <summary>
    /// Writes the new keys and values of several sequences in one indexed copy per tensor: token i of
    /// the flattened batch goes to block <paramref name="blocks"/>[i] at offset <paramref name="offsets"/>[i].
    /// The fast path of <see cref="Write"/> for an engine step; the caller has appended the tokens to
    /// their tables (and so checked the positions).
    /// </summary>
    /// <param name="layer">Layer index.</param>
    /// <param name="blocks">Block id of each new token, (N) int64.</param>
    /// <param name="offsets">Offset of each new token within its block, (N) int64.</param>
    /// <param name="k">Keys, (N, Hkv, Dh).</param>
    /// <param name="v">Values, (N, Hkv, Dh).</param>
    public void WriteTokens(int layer, Tensor blocks, Tensor offsets, Tensor k, Tensor v)
    {
        if ((uint)layer >= (uint)keys.Length) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {keys.Length})");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // Advanced indices on dims 0 and 2 around a slice: the indexed view is (N, Hkv, Dh).
        TensorIndex[] at = [TensorIndex.Tensor(blocks), TensorIndex.Colon, TensorIndex.Tensor(offsets)];
        keys[layer].index_put_(k, at);
        values[layer].index_put_(v, at);
    }

    /// <summary>
    /// Gathers several sequences' keys and values at once, (B, Hkv, S, Dh) each: row b holds positions
    /// 0..S-1 through the blocks of <paramref name="blockIds"/>[b] (padded with any valid block). Positions
    /// past a sequence's length hold whatever those blocks hold: the caller masks them out.
    /// </summary>
    /// <param name="layer">Layer index.</param>
    /// <param name="blockIds">Block ids, (B, nb) int64, nb · BlockSize ≥ S.</param>
    /// <param name="length">S: positions per row.</param>
    public (Tensor Keys, Tensor Values) GatherBatch(int layer, Tensor blockIds, int length)
    {
        if ((uint)layer >= (uint)keys.Length) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {keys.Length})");
        using var scope = NewDisposeScope();
        long b = blockIds.shape[0], nb = blockIds.shape[1];
        Tensor Pick(Tensor pool) => pool.index_select(0, blockIds.reshape(-1))                     // (B·nb, Hkv, Bs, Dh)
            .view(b, nb, Layout.NumKvHeads, BlockSize, Layout.HeadDim)                             // (B, nb, Hkv, Bs, Dh)
            .permute(0, 2, 1, 3, 4)                                                                 // (B, Hkv, nb, Bs, Dh)
            .reshape(b, Layout.NumKvHeads, nb * BlockSize, Layout.HeadDim)                          // (B, Hkv, nb·Bs, Dh)
            .narrow(2, 0, length);                                                                  // (B, Hkv, S, Dh)
        return (Pick(keys[layer]).MoveToOuterDisposeScope(), Pick(values[layer]).MoveToOuterDisposeScope());
    }

    private Tensor Contiguous(Tensor blocks, Tensor index, int length)
    {
        var picked = blocks.index_select(0, index);                                       // (nb, Hkv, Bs, Dh)
        return picked.permute(1, 0, 2, 3)                                                 // (Hkv, nb, Bs, Dh)
            .reshape(Layout.NumKvHeads, index.shape[0] * BlockSize, Layout.HeadDim)      // (Hkv, nb * Bs, Dh)
            .narrow(1, 0, length)                                                         // (Hkv, length, Dh)
            .contiguous();
    }

    private void CheckLayerAndTable(int layer, BlockTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        if ((uint)layer >= (uint)keys.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} is outside the cache's {keys.Length} layers");
        if (table.BlockSize != BlockSize)
            throw new ArgumentException($"the block table's block size {table.BlockSize} differs from the store's {BlockSize}; build both from the same kv_cache options", nameof(table));
    }

    private void CheckHeads(Tensor t, string name)
    {
        if (t.dim() != 3 || t.shape[0] != Layout.NumKvHeads || t.shape[2] != Layout.HeadDim)
            throw new ArgumentException($"{name} of shape ({string.Join(", ", t.shape)}) must be (kv heads = {Layout.NumKvHeads}, tokens, head dim = {Layout.HeadDim})", name);
    }

    private int CheckBlock(int blockId) =>
        (uint)blockId < (uint)NumBlocks ? blockId : throw new InvalidOperationException($"block id {blockId} is outside the store's {NumBlocks} blocks; build the allocator and the store from the same kv_cache options");
}
