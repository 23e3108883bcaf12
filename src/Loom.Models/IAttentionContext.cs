using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// What attention needs beyond the new tokens themselves when rows do not simply start at position 0
/// of one causal sequence: each new token's position, and which keys and values each may attend to.
/// <see cref="PackedLayout"/> (several examples per row) and an inference engine's paged KV cache
/// (rows of different sequences, each continuing its own cached prefix) implement it.
/// </summary>
public interface IAttentionContext
{
    /// <summary>The position of each new token within its own sequence, (B, T) int64.</summary>
    Tensor Positions { get; }

    /// <summary>
    /// Takes the new tokens' keys and values of <paramref name="layer"/>, (B, Hkv, T, Dh), after
    /// rotary embedding, stores them where the context keeps them, and returns the keys and values
    /// the new tokens attend over, (B, Hkv, S, Dh), with the mask saying which, (B, 1, T, S) bool.
    /// </summary>
    (Tensor Keys, Tensor Values, Tensor Mask) Attend(int layer, Tensor keys, Tensor values);
}
