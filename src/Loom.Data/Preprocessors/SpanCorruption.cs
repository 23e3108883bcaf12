namespace Loom.Data.Preprocessors;

/// <summary>The noise parameters of T5's span corruption.</summary>
public sealed record SpanCorruptionOptions
{
    private readonly double noiseDensity = 0.15;
    private readonly double meanNoiseSpanLength = 3.0;

    /// <summary>The fraction of tokens that are noise, in <c>(0, 1)</c>; T5 uses 0.15.</summary>
    /// <exception cref="ArgumentException">The value is outside <c>(0, 1)</c>.</exception>
    public double NoiseDensity
    {
        get => noiseDensity;
        init => noiseDensity = value > 0 && value < 1
            ? value : throw new ArgumentException($"NoiseDensity = {value} must be in (0, 1)", nameof(NoiseDensity));
    }

    /// <summary>The mean length of a noise span, in <c>[1, 1e6]</c>; T5 uses 3.</summary>
    /// <exception cref="ArgumentException">The value is outside <c>[1, 1e6]</c>.</exception>
    public double MeanNoiseSpanLength
    {
        get => meanNoiseSpanLength;
        init => meanNoiseSpanLength = value >= 1 && value <= 1e6
            ? value : throw new ArgumentException($"MeanNoiseSpanLength = {value} must be in [1, 1e6]", nameof(MeanNoiseSpanLength));
    }
}

/// <summary>
/// T5's span corruption (seqio/t5 <c>span_corruption</c>): random spans of the input are each replaced
/// by one sentinel, and the target lists each sentinel followed by the span it replaced.
/// </summary>
/// <remarks>
/// The noise mask follows T5's <c>random_spans_noise_mask</c> step by step, with one generator change:
/// TensorFlow's stateless shuffle is replaced by a Fisher-Yates shuffle drawn from a counter-based
/// generator keyed by (seed, example index), so masks are deterministic per example and independent of
/// order and threads, but not bit-identical to T5's. Sentinel k (0 for the first span) is
/// <c>sentinel(k)</c>; with an <see cref="ExtraIdsVocabulary"/> pass its <c>SentinelId</c>, which
/// gives T5's ids (vocabulary size - 1 - k).
/// </remarks>
public static class SpanCorruption
{
    private const ulong NoisePurpose = 0x6E6F6973;    // "nois": segmentation of the noise tokens
    private const ulong NonNoisePurpose = 0x6B656570; // "keep": segmentation of the kept tokens

    /// <summary>Applies span corruption to one example.</summary>
    /// <param name="tokens">The example's tokens (any length, including 0).</param>
    /// <param name="options">Noise density and mean span length.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="exampleIndex">The example's index; the mask is a pure function of (seed, index, length, options).</param>
    /// <param name="sentinel">Maps a sentinel number k (0, 1, ...) to its id.</param>
    /// <returns>
    /// Inputs: the kept tokens with each noise span replaced by its sentinel.
    /// Targets: each span's sentinel followed by that span, in order (T5 adds a final sentinel when the
    /// mask ends with kept tokens, which only happens for a one-token example).
    /// </returns>
    public static (int[] Inputs, int[] Targets) Apply(int[] tokens, SpanCorruptionOptions options, ulong seed, long exampleIndex, Func<int, int> sentinel)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(sentinel);
        bool[] noise = RandomSpansNoiseMask(tokens.Length, options, seed, exampleIndex);
        bool[] kept = new bool[noise.Length];
        for (int i = 0; i < kept.Length; i++) kept[i] = !noise[i];
        return (NoiseSpanToUniqueSentinel(tokens, noise, sentinel), NoiseSpanToUniqueSentinel(tokens, kept, sentinel));
    }

    /// <summary>
    /// The lengths span corruption gives an example of <paramref name="tokensLength"/> tokens, counting the
    /// EOS appended to each side afterwards (T5's <c>random_spans_helper</c> arithmetic).
    /// </summary>
    /// <param name="tokensLength">Tokens before corruption, at least 2.</param>
    /// <param name="options">Noise density and mean span length.</param>
    /// <returns>Inputs length (kept tokens, one sentinel per span, EOS) and targets length (noise tokens, one sentinel per span, EOS).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokensLength"/> is below 2.</exception>
    public static (int Inputs, int Targets) LengthsWithEos(int tokensLength, SpanCorruptionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokensLength, 2);
        var (numNoise, numSpans) = NoiseCounts(tokensLength, options);
        return (tokensLength - numNoise + numSpans + 1, numNoise + numSpans + 1);
    }

    /// <summary>
    /// The longest chunk of tokens whose corrupted inputs, EOS included, fit <paramref name="inputsLength"/>
    /// (T5's <c>random_spans_helper</c>: with T5's 0.15 and 3, inputs of 512 come from chunks of 568 tokens).
    /// Chunking documents to this length before span corruption fills the encoder's rows without truncation.
    /// </summary>
    /// <param name="inputsLength">The encoder's length, at least 3.</param>
    /// <param name="options">Noise density and mean span length.</param>
    /// <returns>The chunk length, at least <paramref name="inputsLength"/> - 1.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="inputsLength"/> is below 3.</exception>
    public static int TokensLengthForInputs(int inputsLength, SpanCorruptionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(inputsLength, 3);
        int tokensLength = inputsLength - 1;
        while (LengthsWithEos(tokensLength + 1, options).Inputs <= inputsLength) tokensLength++;
        return tokensLength;
    }

    /// <summary>Noise tokens and noise spans of a mask over <paramref name="length"/> (at least 2) tokens.</summary>
    private static (int Noise, int Spans) NoiseCounts(int length, SpanCorruptionOptions options)
    {
        // T5 computes in float32 and rounds half to even (tf.round); so does this.
        int numNoise = (int)MathF.Round(length * (float)options.NoiseDensity, MidpointRounding.ToEven);
        numNoise = Math.Min(Math.Max(numNoise, 1), length - 1);
        int numSpans = (int)MathF.Round(numNoise / (float)options.MeanNoiseSpanLength, MidpointRounding.ToEven);
        // T5 fails (a reshape error) when there are more spans than kept tokens, which needs a density
        // above about mean/(mean+1); here the span count is capped instead. At T5's 0.15/3 it never binds.
        numSpans = Math.Min(Math.Max(numSpans, 1), length - numNoise);
        return (numNoise, numSpans);
    }

    /// <summary>
    /// T5's <c>random_spans_noise_mask</c>: a mask of <paramref name="length"/> entries, true for noise,
    /// made of alternating kept and noise spans that start with a kept span.
    /// </summary>
    /// <param name="length">The number of tokens, at least 0.</param>
    /// <param name="options">Noise density and mean span length.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="exampleIndex">The example's index.</param>
    /// <returns>The mask; round(length * density) noise tokens (at least 1 and at most length - 1 for
    /// length at least 2) in round(noise / mean) spans (at least 1).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public static bool[] RandomSpansNoiseMask(int length, SpanCorruptionOptions options, ulong seed, long exampleIndex)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        int origLength = length;
        // As in T5, a length below 2 is computed as 2 and truncated, so a 1-token example is all kept.
        length = Math.Max(length, 2);
        var (numNoise, numSpans) = NoiseCounts(length, options);
        int numKept = length - numNoise;

        int[] noiseLengths = RandomSegmentation(numNoise, numSpans, CounterRng.Key(seed, NoisePurpose, (ulong)exampleIndex));
        int[] keptLengths = RandomSegmentation(numKept, numSpans, CounterRng.Key(seed, NonNoisePurpose, (ulong)exampleIndex));

        var mask = new bool[origLength];
        int position = 0;
        for (int s = 0; s < numSpans && position < origLength; s++)
        {
            position += keptLengths[s];
            for (int j = 0; j < noiseLengths[s] && position < origLength; j++) mask[position++] = true;
        }
        return mask;
    }

    /// <summary>
    /// T5's <c>noise_span_to_unique_sentinel</c>: each run of masked tokens becomes one sentinel (the
    /// k-th run gets <c>sentinel(k)</c>); unmasked tokens are kept.
    /// </summary>
    /// <param name="tokens">The tokens.</param>
    /// <param name="mask">One entry per token; true marks the tokens to replace.</param>
    /// <param name="sentinel">Maps a run number k to its sentinel id.</param>
    /// <returns>The tokens with each masked run replaced.</returns>
    /// <exception cref="ArgumentException">The mask's length differs from the tokens'.</exception>
    public static int[] NoiseSpanToUniqueSentinel(ReadOnlySpan<int> tokens, ReadOnlySpan<bool> mask, Func<int, int> sentinel)
    {
        ArgumentNullException.ThrowIfNull(sentinel);
        if (mask.Length != tokens.Length)
            throw new ArgumentException($"mask has {mask.Length} entries but there are {tokens.Length} tokens", nameof(mask));
        var result = new List<int>(tokens.Length);
        int runs = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (!mask[i]) result.Add(tokens[i]);
            else if (i == 0 || !mask[i - 1]) result.Add(sentinel(runs++));
        }
        return [.. result];
    }

    /// <summary>
    /// T5's <c>_random_segmentation</c>: splits <paramref name="items"/> into <paramref name="segments"/>
    /// non-empty segments, uniformly over all such splits, by shuffling which of the items-1 gaps start a segment.
    /// </summary>
    private static int[] RandomSegmentation(int items, int segments, ulong key)
    {
        // first_in_segment = shuffle(range(items - 1) < segments - 1), as in T5.
        var starts = new bool[items - 1];
        for (int i = 0; i < segments - 1; i++) starts[i] = true;
        for (int i = starts.Length - 1; i > 0; i--)
        {
            int j = (int)CounterRng.Below(key, (ulong)i, (ulong)i + 1);
            (starts[i], starts[j]) = (starts[j], starts[i]);
        }
        var lengths = new int[segments];
        int segment = 0;
        lengths[0] = 1; // item 0 always opens segment 0 (T5 pads first_in_segment with a leading 0)
        for (int i = 1; i < items; i++)
        {
            if (starts[i - 1]) segment++;
            lengths[segment]++;
        }
        return lengths;
    }
}
