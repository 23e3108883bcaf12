using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// The keys and values a layer's queries attend over, and which: <see cref="Mask"/>, true where query i
/// may attend key j, broadcastable to (B, 1, T, S); or no mask, with <see cref="IsCausal"/> saying whether
/// the T queries and T keys are one causal sequence (the fused kernel's own causal mask) or every query
/// sees every key (a decode step over its cached prefix). Only packed rows and ragged batches need a mask tensor.
/// </summary>
/// <param name="Keys">Keys, (B, Hkv, S, Dh).</param>
/// <param name="Values">Values, (B, Hkv, S, Dh).</param>
/// <param name="Mask">Bool mask broadcastable to (B, 1, T, S), or null.</param>
/// <param name="IsCausal">With no mask: causal over a square T = S, rather than all-to-all.</param>
/// <param name="KeyPositions">
/// Each key's position in its sequence, (B, S), for position-dependent biases (T5's relative
/// positions); null means 0..S-1 in every row (a cache holding a sequence from its start).
/// </param>
public readonly record struct AttentionInputs(Tensor Keys, Tensor Values, Tensor? Mask, bool IsCausal = false, Tensor? KeyPositions = null);

/// <summary>
/// What attention needs beyond the new tokens themselves when rows do not simply start at position 0
/// of one causal sequence: each new token's position, and which keys and values each may attend to.
/// <see cref="PackedLayout"/> (several examples per row), a <see cref="KvCache"/> step (one cached
/// sequence per row) and an inference engine's paged KV cache (rows of different sequences, each
/// continuing its own cached prefix) implement it. The context owns the cache; the model only hands it
/// each layer's new keys and values and attends over what comes back.
/// </summary>
public interface IAttentionContext
{
    /// <summary>The position of each new token within its own sequence, (B, T) int64.</summary>
    Tensor Positions { get; }

    /// <summary>
    /// The first new token's position when every row's new tokens sit at the same positions start..start+T-1
    /// (a <see cref="KvCache"/> step over rows of equal length), else null. With it, rotary embeddings slice
    /// their tables instead of gathering rows by <see cref="Positions"/> (fewer ops per layer in a decode step).
    /// </summary>
    long? StartPosition => null;

    /// <summary>
    /// Takes the new tokens' keys and values of <paramref name="layer"/>, (B, Hkv, T, Dh), after
    /// rotary embedding, stores them where the context keeps them, and returns what the new tokens
    /// attend over.
    /// </summary>
    AttentionInputs Attend(int layer, Tensor keys, Tensor values);

    /// <summary>
    /// For a context that computes standard attention itself (softmax(QKᵀ/√Dh) V, every cached key of the row's own
    /// sequence visible, as a paged cache's decode step does by reading its blocks in place): stores the new keys and
    /// values of <paramref name="layer"/>, (B, Hkv, T, Dh), and returns the output for <paramref name="queries"/>,
    /// (B, H, T, Dh). Null (the default) when it does not, and then the layer calls <see cref="Attend"/> and attends
    /// over what it returns; a context that returns null must not have stored anything.
    /// </summary>
    Tensor? AttendDirectly(int layer, Tensor queries, Tensor keys, Tensor values) => null;

    /// <summary>
    /// The encoder memory decoder layer <paramref name="layer"/> cross-attends to: keys and values,
    /// (B, Hkv, S, Dh), and a mask, (B, 1, 1 or T, S), true at the row's own real encoder positions.
    /// </summary>
    /// <exception cref="NotSupportedException">The context holds no encoder memory (a decoder-only model's).</exception>
    AttentionInputs CrossAttend(int layer) =>
        throw new NotSupportedException("this attention context holds no encoder memory: encode the inputs first (LanguageModel.Encode)");
}
