namespace Loom.Data.FeatureConverters;

/// <summary>Settings of <see cref="EncoderDecoderFeatureConverter"/>; the defaults mirror seqio's <c>EncDecFeatureConverter(pack=True)</c>.</summary>
public sealed record EncoderDecoderFeatureOptions : PackingOptions
{
    /// <summary>Creates options.</summary>
    /// <param name="inputsLength">Encoder tokens per row, positive.</param>
    /// <param name="targetsLength">Decoder tokens per row, positive.</param>
    /// <exception cref="ArgumentException">A length is not positive.</exception>
    public EncoderDecoderFeatureOptions(int inputsLength, int targetsLength)
    {
        InputsLength = inputsLength;
        TargetsLength = targetsLength;
    }

    /// <summary>
    /// Options whose start and pad ids are the vocabulary's pad id, as
    /// <see cref="DecoderFeatureOptions.ForVocabulary"/> explains.
    /// </summary>
    /// <param name="vocabulary">The vocabulary the examples were encoded with.</param>
    /// <param name="inputsLength">Encoder tokens per row, positive.</param>
    /// <param name="targetsLength">Decoder tokens per row, positive.</param>
    /// <returns>Packing options with <see cref="PackingOptions.StartId"/> = <see cref="PackingOptions.PadId"/> = <see cref="IVocabulary.PadId"/>.</returns>
    /// <exception cref="ArgumentException">A length is not positive.</exception>
    public static EncoderDecoderFeatureOptions ForVocabulary(IVocabulary vocabulary, int inputsLength, int targetsLength)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new EncoderDecoderFeatureOptions(inputsLength, targetsLength) { StartId = vocabulary.PadId, PadId = vocabulary.PadId };
    }

    /// <summary>Encoder tokens per row (seqio's task length of "inputs"); longer inputs are truncated.</summary>
    public int InputsLength
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"inputs length = {value} must be positive");
    }

    /// <summary>Decoder tokens per row (seqio's task length of "targets"); longer targets are truncated.</summary>
    public int TargetsLength
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"targets length = {value} must be positive");
    }

}
