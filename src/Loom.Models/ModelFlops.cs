namespace Loom.Models;

/// <summary>
/// Training FLOPs per token as the PaLM paper counts them for MFU (Chowdhery et al. 2022, Appendix B):
/// <c>6·N + 12·L·H·Q·T</c>. The first term is the forward (2 FLOPs per multiply-add) plus backward
/// (twice the forward) cost of every weight matmul a token goes through; the second is the same for the
/// attention score and value matmuls, which grow with the sequence length and involve no parameters.
/// </summary>
public static class ModelFlops
{
    /// <summary>FLOPs to train on one token.</summary>
    /// <param name="matmulParameters">N: parameters in a matmul for every token (active experts only; no lookup-only tables).</param>
    /// <param name="attentionLayers">L: attention layers a token goes through (self- and cross-attention alike).</param>
    /// <param name="heads">H: query heads per layer.</param>
    /// <param name="headDim">Q: width of a head.</param>
    /// <param name="sequenceLength">T: keys each query attends over; causal masking is not credited with halving it.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative (or, but for N, zero).</exception>
    public static double PerToken(long matmulParameters, int attentionLayers, int heads, int headDim, int sequenceLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(matmulParameters);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(attentionLayers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(heads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequenceLength);
        // Doubles throughout: L·H·Q·T alone overflows an int for large models with long contexts.
        return 6.0 * matmulParameters + 12.0 * attentionLayers * heads * headDim * sequenceLength;
    }
}
