using Loom.Inference.Paging;
using Loom.Models;
using Loom.Models.Kernels;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>One row of a step: a sequence, the position of its first new token and how many it has.</summary>
/// <param name="BlockIds">The sequence's blocks (its block table's ids); its new tokens are already appended.</param>
/// <param name="Start">Position of the first new token (tokens before it are cached).</param>
/// <param name="Count">New tokens in the row (the rest of the row, up to the step's width, is padding).</param>
internal readonly record struct PagedRow(IReadOnlyList<int> BlockIds, int Start, int Count);

/// <summary>
/// Attention for one engine step over rows of different sequences: row b holds tokens
/// Start..Start+Count-1 of its sequence, right-padded to the step's width T. Each layer writes every
/// row's new keys and values into the paged store in one indexed copy, then gathers every row's
/// blocks in one more (S positions, the longest row's), and masks so that token i of row b sees
/// positions 0..Start+i of its own sequence only (the rest of a shorter row's S is never seen).
/// For an encoder-decoder every row also cross-attends to its own request's encoder memory, padded to
/// the longest one in the step and masked to the row's own length. A decode step (one new token a row) of a
/// decoder-only model on the CPU skips the gather and the mask: each row's query reads its own blocks in place
/// (<see cref="AttendDirectly"/>, <see cref="OneQueryAttention.Paged"/>).
/// </summary>
internal sealed class PagedAttentionContext : IAttentionContext
{
    private readonly PagedKvStore store;
    private readonly IReadOnlyList<PagedRow> rows;
    private readonly int width; // T
    private readonly Device device;
    private Tensor? mask; // (B, 1, T, S), built on first use: a paged decode step never needs it
    private (IReadOnlyList<int>[] BlockIds, int[] Lengths)? decodeRows; // each row's blocks and length, for AttendDirectly
    private readonly int keyLength; // S
    private readonly Tensor writeBlocks, writeOffsets, writeRows; // (N): block, offset and flat (b·T + i) row of each real new token
    private readonly Tensor blockIds; // (B, nb): each row's blocks, padded
    private readonly IReadOnlyList<EncoderMemory>? memories; // per row, (1, Hkv, S_b, Dh) per layer
    private readonly Tensor? memoryMask; // (B, 1, 1, S_max)

    public PagedAttentionContext(IReadOnlyList<PagedRow> rows, PagedKvStore store, int width, Device device, IReadOnlyList<EncoderMemory>? memories = null)
    {
        this.store = store;
        this.rows = rows;
        this.width = width;
        this.device = device;
        this.memories = memories;
        if (memories is not null)
        {
            long longest = memories.Max(m => m.Length);
            var valid = new bool[rows.Count * longest];
            for (int b = 0; b < rows.Count; b++)
                for (long j = 0; j < memories[b].Length; j++) valid[b * longest + j] = true;
            memoryMask = tensor(valid, [rows.Count, 1, 1, longest], @bool, device);             // (B, 1, 1, S_max)
        }
        keyLength = rows.Max(r => r.Start + r.Count);
        var positions = new long[rows.Count * width];
        for (int b = 0; b < rows.Count; b++)
            for (int i = 0; i < width; i++) positions[b * width + i] = Position(b, i);
        Positions = tensor(positions, [rows.Count, width], int64, device);                       // (B, T)

        int blockSize = store.BlockSize;
        var blocks = new List<long>();
        var offsets = new List<long>();
        var flat = new List<long>();
        for (int b = 0; b < rows.Count; b++)
            for (int i = 0; i < rows[b].Count; i++)
            {
                int position = rows[b].Start + i;
                blocks.Add(rows[b].BlockIds[position / blockSize]);
                offsets.Add(position % blockSize);
                flat.Add((long)b * width + i);
            }
        writeBlocks = tensor(blocks.ToArray(), int64, device);                                   // (N)
        writeOffsets = tensor(offsets.ToArray(), int64, device);                                 // (N)
        writeRows = tensor(flat.ToArray(), int64, device);                                       // (N)
        int perRow = (keyLength + blockSize - 1) / blockSize;
        var ids = new long[rows.Count * perRow];
        for (int b = 0; b < rows.Count; b++)
        {
            var table = rows[b].BlockIds;
            for (int j = 0; j < perRow; j++) ids[b * perRow + j] = table[Math.Min(j, table.Count - 1)];
        }
        blockIds = tensor(ids, [rows.Count, perRow], int64, device);                             // (B, nb)
    }

    public Tensor Positions { get; }

    /// <summary>One row: its tokens sit at Start..Start+T-1, so rotary slices its tables (no gather by position).</summary>
    public long? StartPosition => rows.Count == 1 ? rows[0].Start : null;

    // Padding queries take the row's last position: they see real keys (no all-masked row, no NaN) and their outputs are ignored.
    private int Position(int b, int i) => rows[b].Start + Math.Min(i, rows[b].Count - 1);

    public AttentionInputs Attend(int layer, Tensor keys, Tensor values)
    {
        Write(layer, keys, values);
        var (k, v) = store.GatherBatch(layer, blockIds, keyLength);                              // (B, Hkv, S, Dh) x 2
        return new AttentionInputs(k, v, mask ??= Mask());
    }

    public Tensor? AttendDirectly(int layer, Tensor queries, Tensor keys, Tensor values)
    {
        if (width != 1 || memories is not null) return null; // a decode step of a decoder-only model only
        var (keyPool, valuePool) = store.Pools(layer);
        if (!OneQueryAttention.TakesPaged(queries, keyPool, valuePool, keyLength * (long)rows.Count)) return null;
        Write(layer, keys, values);
        decodeRows ??= ([.. rows.Select(r => r.BlockIds)], [.. rows.Select(r => r.Start + 1)]); // once a step, not once a layer
        return OneQueryAttention.Paged(queries, keyPool, valuePool, decodeRows.Value.BlockIds, decodeRows.Value.Lengths); // (B, H, 1, Dh)
    }

    // All rows' writes before any read: a row may share a prefix block that another row fills in this step.
    private void Write(int layer, Tensor keys, Tensor values)
    {
        long heads = keys.size(1), dim = keys.size(3);
        Tensor Tokens(Tensor x) => x.permute(0, 2, 1, 3).reshape(-1, heads, dim).index_select(0, writeRows); // (N, Hkv, Dh)
        store.WriteTokens(layer, writeBlocks, writeOffsets, Tokens(keys), Tokens(values));
    }

    // Token i of row b sees positions 0..Start+i of its own sequence: (B, 1, T, S).
    private Tensor Mask()
    {
        var allowed = new bool[rows.Count * width * keyLength];
        for (int b = 0; b < rows.Count; b++)
            for (int i = 0; i < width; i++)
                for (int j = 0; j <= Position(b, i); j++) allowed[(b * width + i) * keyLength + j] = true;
        return tensor(allowed, [rows.Count, 1, width, keyLength], @bool, device);                // (B, 1, T, S)
    }

    public AttentionInputs CrossAttend(int layer)
    {
        if (memories is null || memoryMask is null) throw new NotSupportedException("this step has no encoder memory: the model is decoder-only");
        long longest = memoryMask.shape[^1];
        // Each request's memory padded to the step's longest (the mask hides the padding).
        Tensor Padded(Tensor x) => x.shape[2] == longest ? x : nn.functional.pad(x, [0, 0, 0, longest - x.shape[2]]); // (1, Hkv, S_max, Dh)
        var keys = cat([.. memories.Select(m => Padded(m.Layers[layer].Keys))], 0);     // (B, Hkv, S_max, Dh)
        var values = cat([.. memories.Select(m => Padded(m.Layers[layer].Values))], 0); // (B, Hkv, S_max, Dh)
        return new AttentionInputs(keys, values, memoryMask);
    }
}
