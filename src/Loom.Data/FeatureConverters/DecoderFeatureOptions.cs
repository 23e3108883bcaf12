namespace Loom.Data.FeatureConverters;

/// <summary>What happens to an example with more tokens than the sequence length.</summary>
public enum LongExampleHandling
{
    /// <summary>Keep its first L tokens and drop the rest (so its EOS is lost), as seqio's <c>trim_and_pack_dataset</c>.</summary>
    Truncate,

    /// <summary>Cut it into consecutive pieces of at most L tokens, each packed as a segment of its own; no token is lost.</summary>
    Split,
}

/// <summary>Settings of <see cref="DecoderFeatureConverter"/>; the defaults mirror seqio's <c>DecoderFeatureConverter(pack=True)</c>.</summary>
public sealed record DecoderFeatureOptions : PackingOptions
{
    /// <summary>Creates options.</summary>
    /// <param name="sequenceLength">L: tokens per row, positive.</param>
    /// <exception cref="ArgumentException"><paramref name="sequenceLength"/> is not positive.</exception>
    public DecoderFeatureOptions(int sequenceLength) => SequenceLength = sequenceLength;

    /// <summary>
    /// Options for a vocabulary whose id 0 may be a real token (Loom's byte vocabulary maps 0 to byte
    /// 0x00): start and pad ids both become the vocabulary's pad id, which is seqio's convention (T5's
    /// pad id 0 doubles as BOS) carried over to where the pad id lives.
    /// </summary>
    /// <param name="vocabulary">The vocabulary the examples were encoded with.</param>
    /// <param name="sequenceLength">L: tokens per row, positive.</param>
    /// <returns>Packing options with <see cref="PackingOptions.StartId"/> = <see cref="PackingOptions.PadId"/> = <see cref="IVocabulary.PadId"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="sequenceLength"/> is not positive.</exception>
    public static DecoderFeatureOptions ForVocabulary(IVocabulary vocabulary, int sequenceLength)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new DecoderFeatureOptions(sequenceLength) { StartId = vocabulary.PadId, PadId = vocabulary.PadId };
    }

    /// <summary>L: tokens per row.</summary>
    public int SequenceLength
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"sequence length = {value} must be positive");
    }

    /// <summary>What to do with examples longer than L; <see cref="LongExampleHandling.Truncate"/> by default, as seqio.</summary>
    public LongExampleHandling LongExamples
    {
        get;
        init => field = Enum.IsDefined(value) ? value : throw new ArgumentException($"unknown long-example handling {value}");
    } = LongExampleHandling.Truncate;
}
