using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// Keys and values of every layer for a batch of sequences, preallocated to a fixed length and
/// written in place (never grown with cat). The caller owns it; the model only reads and writes
/// the slots it is given. With multi-query attention it holds one K/V head per layer, which is
/// what makes long contexts and large batches fit (Pope et al. 2022).
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys;   // L x (B, Hkv, S, Dh)
    private readonly Tensor[] values; // L x (B, Hkv, S, Dh)

    /// <summary>Allocates an empty cache for <paramref name="batchSize"/> sequences of up to <paramref name="capacity"/> tokens.</summary>
    public KvCache(DecoderLmOptions options, int batchSize, int capacity, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (capacity <= 0 || capacity > options.MaxSequenceLength)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"cache capacity {capacity} must be in 1..{options.MaxSequenceLength} (model.max_sequence_length)");
        keys = new Tensor[options.NumLayers];
        values = new Tensor[options.NumLayers];
        for (int l = 0; l < options.NumLayers; l++)
        {
            keys[l] = zeros(new long[] { batchSize, options.NumKvHeads, capacity, options.HeadDim }, dtype, device).DetachFromDisposeScope();
            values[l] = zeros(new long[] { batchSize, options.NumKvHeads, capacity, options.HeadDim }, dtype, device).DetachFromDisposeScope();
        }
        Capacity = capacity;
    }

    /// <summary>Number of positions filled so far (the next token's position).</summary>
    public int Length { get; private set; }

    /// <summary>Maximum number of positions.</summary>
    public int Capacity { get; }

    /// <summary>Bytes held by the cache.</summary>
    public long Bytes => keys.Sum(k => k.NumberOfElements * k.ElementSize) * 2;

    /// <summary>
    /// Writes layer <paramref name="layer"/>'s new keys and values, (B, Hkv, T, Dh), at positions
    /// Length..Length+T-1, and returns views of all keys and values so far, (B, Hkv, Length+T, Dh).
    /// </summary>
    public (Tensor Keys, Tensor Values) Write(int layer, Tensor k, Tensor v)
    {
        long t = k.shape[2];
        if (Length + t > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} + {t} tokens exceed its capacity of {Capacity}");
        keys[layer].narrow(2, Length, t).copy_(k);
        values[layer].narrow(2, Length, t).copy_(v);
        return (keys[layer].narrow(2, 0, Length + t), values[layer].narrow(2, 0, Length + t));
    }

    /// <summary>
    /// Rearranges the batch's rows: row b becomes the old row <c>rows[b]</c> (rows may repeat), as beam
    /// search does when beams continue from other beams' prefixes.
    /// </summary>
    /// <param name="rows">Old row indices, (B) int64, on any device.</param>
    public void ReorderRows(Tensor rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var index = rows.to(keys[0].device);
        for (int l = 0; l < keys.Length; l++)
        {
            keys[l].copy_(keys[l].index_select(0, index));
            values[l].copy_(values[l].index_select(0, index));
        }
    }

    /// <summary>Marks <paramref name="tokens"/> more positions as filled; the model calls it after its last layer.</summary>
    public void Advance(int tokens) => Length += tokens;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in keys.Concat(values)) t.Dispose();
    }
}
