using Loom.Inference.Paging;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>One row of a step: a sequence, the position of its first new token and how many it has.</summary>
/// <param name="Table">The sequence's blocks; its new tokens are already appended.</param>
/// <param name="Start">Position of the first new token (tokens before it are cached).</param>
/// <param name="Count">New tokens in the row (the rest of the row, up to the step's width, is padding).</param>
internal readonly record struct PagedRow(BlockTable Table, int Start, int Count);

/// <summary>
/// Attention for one engine step over rows of different sequences: row b holds tokens
/// Start..Start+Count-1 of its sequence, right-padded to the step's width T. Each layer writes every
/// row's new keys and values into the paged store first, then gathers each row's whole prefix, pads
/// them to the longest (S), and masks so that token i of row b sees positions 0..Start+i of its own
/// sequence only.
/// </summary>
internal sealed class PagedAttentionContext : IAttentionContext
{
    private readonly IReadOnlyList<PagedRow> rows;
    private readonly PagedKvStore store;
    private readonly Tensor mask; // (B, 1, T, S)
    private readonly int keyLength; // S

    public PagedAttentionContext(IReadOnlyList<PagedRow> rows, PagedKvStore store, int width, Device device)
    {
        this.rows = rows;
        this.store = store;
        keyLength = rows.Max(r => r.Start + r.Count);
        var positions = new long[rows.Count * width];
        var allowed = new bool[rows.Count * width * keyLength];
        for (int b = 0; b < rows.Count; b++)
            for (int i = 0; i < width; i++)
            {
                // Padding queries take the row's last position: they see real keys (no all-masked row, no NaN) and their outputs are ignored.
                int position = rows[b].Start + Math.Min(i, rows[b].Count - 1);
                positions[b * width + i] = position;
                for (int j = 0; j <= position; j++) allowed[(b * width + i) * keyLength + j] = true;
            }
        Positions = tensor(positions, [rows.Count, width], int64, device);                       // (B, T)
        mask = tensor(allowed, [rows.Count, 1, width, keyLength], @bool, device);               // (B, 1, T, S)
    }

    public Tensor Positions { get; }

    public (Tensor Keys, Tensor Values, Tensor Mask) Attend(int layer, Tensor keys, Tensor values)
    {
        // Every row's writes before any gather: a row may share a prefix block that another row fills in this step.
        for (int b = 0; b < rows.Count; b++)
        {
            var (table, start, count) = rows[b];
            store.Write(layer, table, start, keys[b].narrow(1, 0, count), values[b].narrow(1, 0, count)); // (Hkv, count, Dh)
        }
        var gatheredKeys = new Tensor[rows.Count];
        var gatheredValues = new Tensor[rows.Count];
        for (int b = 0; b < rows.Count; b++)
        {
            var (table, start, count) = rows[b];
            var (k, v) = store.Gather(layer, table, start + count);                              // (Hkv, start + count, Dh)
            long pad = keyLength - (start + count);
            gatheredKeys[b] = pad == 0 ? k : nn.functional.pad(k, [0, 0, 0, pad]);                // (Hkv, S, Dh)
            gatheredValues[b] = pad == 0 ? v : nn.functional.pad(v, [0, 0, 0, pad]);              // (Hkv, S, Dh)
        }
        return (stack(gatheredKeys), stack(gatheredValues), mask);                               // (B, Hkv, S, Dh) x 2, (B, 1, T, S)
    }
}
