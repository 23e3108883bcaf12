namespace Loom.Training.Metrics;

/// <summary>
/// Model FLOPs utilisation (MFU) as defined in the PaLM paper (Chowdhery et al. 2022, Appendix B):
/// the throughput the model would need if it did exactly the FLOPs of its forward and backward matmuls
/// and nothing else, as a fraction of the hardware's peak. Rematerialisation, padding and other
/// overheads are deliberately not counted, so MFU compares implementations and hardware fairly.
/// </summary>
public static class Mfu
{
    /// <summary>
    /// Training FLOPs per token, PaLM Appendix B: <c>6·N + 12·L·H·Q·T</c>. The first term is the
    /// forward (2 FLOPs per multiply-add) plus backward (twice the forward) cost of every weight
    /// matmul; the second is the same for the attention score and value matmuls, which grow with the
    /// sequence length and involve no parameters.
    /// </summary>
    /// <param name="matmulParameters">
    /// N: the parameters that take part in a matmul for every token. This library's convention: every
    /// parameter except lookup-only tables (an untied input embedding, learned position tables), but
    /// including the output projection to the vocabulary. For a PaLM-style model, whose input embedding
    /// is shared with the output projection and which uses RoPE, that is simply the total parameter count.
    /// </param>
    /// <param name="layers">L: the number of Transformer blocks.</param>
    /// <param name="heads">H: the number of query heads per block.</param>
    /// <param name="headDim">Q: the dimension of one attention head.</param>
    /// <param name="sequenceLength">
    /// T: the training sequence length. As in PaLM, the attention term is counted as if every query
    /// attended to all T positions; causal masking is not credited with halving it.
    /// </param>
    /// <returns>FLOPs needed to train on one token.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative (or, for <paramref name="layers"/>, <paramref name="heads"/>, <paramref name="headDim"/>, <paramref name="sequenceLength"/>, zero).</exception>
    public static double FlopsPerToken(long matmulParameters, int layers, int heads, int headDim, int sequenceLength)
    {
        return Loom.Models.ModelFlops.PerToken(matmulParameters, layers, heads, headDim, sequenceLength);
    }

    /// <summary>
    /// The fraction of peak achieved: <c>flopsPerToken · tokensPerSecond / peakFlops</c>
    /// (0.5 means 50%). Named <c>Compute</c> because C# does not allow a member named like its class.
    /// </summary>
    /// <param name="flopsPerToken">From <see cref="FlopsPerToken"/>.</param>
    /// <param name="tokensPerSecond">Measured training throughput, summed over every device that <paramref name="peakFlops"/> covers.</param>
    /// <param name="peakFlops">Peak FLOP/s of the hardware doing the work, for example <see cref="PeakFlops.FlopsPerSecond"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A throughput or FLOP count is negative or not finite, or the peak is not positive.</exception>
    public static double Compute(double flopsPerToken, double tokensPerSecond, double peakFlops)
    {
        if (!double.IsFinite(flopsPerToken) || flopsPerToken < 0)
            throw new ArgumentOutOfRangeException(nameof(flopsPerToken), flopsPerToken, "must be finite and non-negative");
        if (!double.IsFinite(tokensPerSecond) || tokensPerSecond < 0)
            throw new ArgumentOutOfRangeException(nameof(tokensPerSecond), tokensPerSecond, "must be finite and non-negative");
        if (!double.IsFinite(peakFlops) || peakFlops <= 0)
            throw new ArgumentOutOfRangeException(nameof(peakFlops), peakFlops, "must be finite and positive");
        return flopsPerToken * tokensPerSecond / peakFlops;
    }
}
