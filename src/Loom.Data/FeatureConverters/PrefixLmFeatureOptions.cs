namespace Loom.Data.FeatureConverters;

/// <summary>
/// Settings of <see cref="PrefixLmFeatureConverter"/>; the defaults mirror seqio's
/// <c>PrefixLMFeatureConverter(pack=True, loss_on_targets_only=True)</c>.
/// </summary>
public sealed record PrefixLmFeatureOptions : PackingOptions
{
    /// <summary>Creates options.</summary>
    /// <param name="sequenceLength">L: tokens per row (inputs and targets together), positive.</param>
    /// <exception cref="ArgumentException"><paramref name="sequenceLength"/> is not positive.</exception>
    public PrefixLmFeatureOptions(int sequenceLength) => SequenceLength = sequenceLength;

    /// <summary>
    /// Options whose start and pad ids are the vocabulary's pad id, as
    /// <see cref="DecoderFeatureOptions.ForVocabulary"/> explains.
    /// </summary>
    /// <param name="vocabulary">The vocabulary the examples were encoded with.</param>
    /// <param name="sequenceLength">L: tokens per row, positive.</param>
    /// <returns>Packing options with <see cref="PackingOptions.StartId"/> = <see cref="PackingOptions.PadId"/> = <see cref="IVocabulary.PadId"/>.</returns>
    /// <exception cref="ArgumentException"><paramref name="sequenceLength"/> is not positive.</exception>
    public static PrefixLmFeatureOptions ForVocabulary(IVocabulary vocabulary, int sequenceLength)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new PrefixLmFeatureOptions(sequenceLength) { StartId = vocabulary.PadId, PadId = vocabulary.PadId };
    }

    /// <summary>L: tokens per row; an example's inputs and targets share it (seqio sums the two task lengths).</summary>
    public int SequenceLength
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"sequence length = {value} must be positive");
    }

    /// <summary>
    /// Whether only the targets part carries loss weight (true, the default, as seqio's
    /// <c>loss_on_targets_only</c>); false puts weight 1 on the inputs part too.
    /// </summary>
    public bool LossOnTargetsOnly { get; init; } = true;
}
