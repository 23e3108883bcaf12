namespace Loom.Data.Evaluation;

/// <summary>
/// Converts a summed negative log-likelihood into the usual language-model figures. Summing first and
/// dividing once (rather than averaging per-batch means) weights every token equally however batches fall.
/// </summary>
public static class LanguageModelMetrics
{
    /// <summary><c>exp(nats / tokens)</c>: the perplexity per token.</summary>
    /// <param name="totalNats">The summed negative log-likelihood in nats, non-negative.</param>
    /// <param name="tokenCount">The number of scored tokens, positive.</param>
    /// <returns>The perplexity, at least 1.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range.</exception>
    public static double Perplexity(double totalNats, long tokenCount) => Math.Exp(NatsPerToken(totalNats, tokenCount));

    /// <summary><c>nats / tokens</c>: the mean cross-entropy per token.</summary>
    /// <param name="totalNats">The summed negative log-likelihood in nats, non-negative.</param>
    /// <param name="tokenCount">The number of scored tokens, positive.</param>
    /// <returns>The mean loss in nats.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range.</exception>
    public static double NatsPerToken(double totalNats, long tokenCount)
    {
        CheckNats(totalNats);
        if (tokenCount <= 0)
            throw new ArgumentOutOfRangeException(nameof(tokenCount), tokenCount, $"the token count must be positive, got {tokenCount}");
        return totalNats / tokenCount;
    }

    /// <summary>
    /// <c>nats / (bytes * ln 2)</c>: bits per UTF-8 byte of the scored text, which, unlike perplexity,
    /// compares models with different vocabularies.
    /// </summary>
    /// <param name="totalNats">The summed negative log-likelihood in nats, non-negative.</param>
    /// <param name="byteCount">The UTF-8 bytes of the text the scored tokens decode to, positive.</param>
    /// <returns>Bits per byte.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range.</exception>
    public static double BitsPerByte(double totalNats, long byteCount)
    {
        CheckNats(totalNats);
        if (byteCount <= 0)
            throw new ArgumentOutOfRangeException(nameof(byteCount), byteCount, $"the byte count must be positive, got {byteCount}");
        return totalNats / (byteCount * Math.Log(2));
    }

    private static void CheckNats(double totalNats)
    {
        if (!(totalNats >= 0) || double.IsInfinity(totalNats))
            throw new ArgumentOutOfRangeException(nameof(totalNats), totalNats, $"the summed loss must be finite and non-negative, got {totalNats}");
    }
}
