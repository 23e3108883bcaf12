using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// Keys and values of every layer for a batch of sequences, preallocated to a fixed length and
/// written in place (never grown with cat), plus, for an encoder-decoder model, the encoder memory
/// the decoder cross-attends to. The caller owns it and runs the model through <see cref="Run"/>,
/// which hands the model a context for the new tokens and advances the cache when the step
/// succeeds: the cache alone keeps its length. With multi-query attention it holds one K/V head per
/// layer, which is what makes long contexts and large batches fit (Pope et al. 2022).
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys;   // L x (B, Hkv, S, Dh)
    private readonly Tensor[] values; // L x (B, Hkv, S, Dh)
    private EncoderMemory? memory;

    /// <summary>Allocates an empty cache for <paramref name="batchSize"/> sequences of up to <paramref name="capacity"/> tokens.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch size or capacity is not positive.</exception>
    public KvCache(KvCacheShape shape, int batchSize, int capacity, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), $"cache capacity {capacity} must be positive");
        keys = new Tensor[shape.NumLayers];
        values = new Tensor[shape.NumLayers];
        for (int l = 0; l < shape.NumLayers; l++)
        {
            keys[l] = zeros(new long[] { batchSize, shape.NumKvHeads, capacity, shape.HeadDim }, dtype, device).DetachFromDisposeScope();
            values[l] = zeros(new long[] { batchSize, shape.NumKvHeads, capacity, shape.HeadDim }, dtype, device).DetachFromDisposeScope();
        }
        BatchSize = batchSize;
        Capacity = capacity;
    }

    /// <summary>Allocates a cache for <paramref name="model"/>'s decoder.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The capacity exceeds the model's context.</exception>
    public static KvCache For(LanguageModel model, int batchSize, int capacity)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (capacity > model.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"cache capacity {capacity} must be in 1..{model.ContextLength} (model.max_sequence_length)");
        var first = model.parameters().FirstOrDefault() ?? model.buffers().First();
        return new KvCache(model.KvCacheShape, batchSize, capacity, first.device, first.dtype == ScalarType.Int8 ? ScalarType.Float32 : first.dtype);
    }

    /// <summary>Number of positions filled so far (the next token's position).</summary>
    public int Length { get; private set; }

    /// <summary>Maximum number of positions.</summary>
    public int Capacity { get; }

    /// <summary>Rows (sequences) in the cache.</summary>
    public int BatchSize { get; }

    /// <summary>Bytes held by the cache (self-attention keys and values).</summary>
    public long Bytes => keys.Sum(k => k.NumberOfElements * k.ElementSize) * 2;

    /// <summary>
    /// The encoder memory every row cross-attends to (an encoder-decoder model's, from
    /// <see cref="LanguageModel.Encode"/>; one row is shared by all rows, as beams of one request share
    /// it). The cache owns it from then on and disposes it.
    /// </summary>
    public EncoderMemory? Memory
    {
        get => memory;
        set
        {
            if (value is not null && value.Valid.shape[0] != 1 && value.Valid.shape[0] != BatchSize)
                throw new ArgumentException($"encoder memory of {value.Valid.shape[0]} rows does not fit a cache of {BatchSize}: give one row or one per cache row");
            memory?.Dispose();
            memory = value?.DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// Runs <paramref name="model"/> on new tokens, (B, T), at positions Length..Length+T-1: their keys and
    /// values are written into the cache and they attend over everything cached. A prefill is one call
    /// with the prompt, a decode step one call with the newest token. Returns the logits, (B, T, V).
    /// </summary>
    /// <exception cref="InvalidOperationException">The new tokens do not fit the cache.</exception>
    public Tensor Run(LanguageModel model, Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        int t = (int)tokens.size(1);
        if (Length + t > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} + {t} tokens exceed its capacity of {Capacity}");
        var logits = model.Forward(tokens, new Step(this, t, tokens.size(0), tokens.device));
        Length += t; // only once the whole step has written every layer
        return logits;
    }

    /// <summary>
    /// Rolls the cache back to its first <paramref name="length"/> positions, as speculative decoding does
    /// after the target rejects draft tokens: later positions are simply overwritten by the next <see cref="Run"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or beyond <see cref="Length"/>.</exception>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), $"cannot truncate a cache of {Length} positions to {length}: give 0..{Length}");
        Length = length;
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

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in keys.Concat(values)) t.Dispose();
        memory?.Dispose();
    }

    /// <summary>One <see cref="Run"/> call's view of the cache: T new tokens at positions start..start+T-1.</summary>
    private sealed class Step(KvCache cache, int count, long rows, Device device) : IAttentionContext
    {
        private readonly int start = cache.Length;
        private Tensor? positions;

        // Built on first use only: rotary reads StartPosition, so a decoder with rotary embeddings never needs it.
        public Tensor Positions => positions ??= arange(start, start + count, dtype: int64, device: device).unsqueeze(0).expand(rows, count); // (B, T)

        public long? StartPosition => start;

        public AttentionInputs Attend(int layer, Tensor k, Tensor v)
        {
            cache.keys[layer].narrow(2, start, count).copy_(k);
            cache.values[layer].narrow(2, start, count).copy_(v);
            var keys = cache.keys[layer].narrow(2, 0, start + count);     // (B, Hkv, S, Dh), S = start + T
            var values = cache.values[layer].narrow(2, 0, start + count); // (B, Hkv, S, Dh)
            if (start == 0) return new AttentionInputs(keys, values, null, IsCausal: true); // a prefill: one causal sequence
            if (count == 1) return new AttentionInputs(keys, values, null);                 // a decode step sees every cached key
            return new AttentionInputs(keys, values, CausalMask(count, start, device));      // a chunk after a prefix: (T, S)
        }

        public AttentionInputs CrossAttend(int layer)
        {
            var memory = cache.memory ?? throw new InvalidOperationException("this cache holds no encoder memory: set KvCache.Memory from LanguageModel.Encode before decoding an encoder-decoder model");
            var (k, v) = memory.Layers[layer];                           // (1 or B, Hkv, S, Dh)
            var valid = memory.Valid;                                    // (1 or B, S)
            if (k.shape[0] != rows)
            {
                k = k.expand(rows, -1, -1, -1);
                v = v.expand(rows, -1, -1, -1);
                valid = valid.expand(rows, -1);
            }
            return new AttentionInputs(k, v, valid.unsqueeze(1).unsqueeze(1)); // mask (B, 1, 1, S)
        }
    }

    /// <summary>Boolean mask, (T, start+T): query i (at position start+i) may see key j when j ≤ start+i.</summary>
    public static Tensor CausalMask(long t, long start, Device device)
    {
        var rows = arange(t, device: device).unsqueeze(1) + start; // (T, 1)
        var cols = arange(start + t, device: device).unsqueeze(0); // (1, S)
        return cols <= rows;                                        // (T, S)
    }
}
