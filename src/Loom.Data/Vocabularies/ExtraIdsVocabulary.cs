using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Data;

/// <summary>
/// Wraps a vocabulary and appends <see cref="ExtraIdCount"/> sentinel ids after it, as seqio's
/// <c>extra_ids</c> do for T5's span corruption.
/// </summary>
/// <remarks>
/// <para>The T5 convention numbers the sentinels downwards from the end: sentinel <c>k</c>, rendered
/// <c>&lt;extra_id_k&gt;</c>, has id <c>inner.Size + count - 1 - k</c>, so <c>&lt;extra_id_0&gt;</c> is
/// the LAST id (32099 in T5's 32,100-id vocabulary) and <c>&lt;extra_id_{count-1}&gt;</c> is
/// <c>inner.Size</c>. Every inner id keeps its number, and EOS and PAD are the inner vocabulary's.</para>
/// <para><see cref="Encode"/> turns the literal text <c>&lt;extra_id_k&gt;</c> (k below the count) into
/// its sentinel, as seqio's SentencePiece vocabulary does with its user-defined pieces, and encodes the
/// text between sentinels with the inner vocabulary piece by piece; <see cref="Decode"/> is its inverse.</para>
/// </remarks>
public sealed partial class ExtraIdsVocabulary : IVocabulary
{
    /// <summary>The most sentinels a wrapper may add; T5 uses 100.</summary>
    public const int MaxExtraIds = 1_000_000;

    /// <summary>Wraps <paramref name="inner"/> with <paramref name="count"/> sentinels.</summary>
    /// <param name="inner">The vocabulary whose ids come first.</param>
    /// <param name="count">The number of sentinels, in <c>[0, MaxExtraIds]</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is outside <c>[0, MaxExtraIds]</c>.</exception>
    public ExtraIdsVocabulary(IVocabulary inner, int count)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (count is < 0 or > MaxExtraIds)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"count must be in [0, {MaxExtraIds}]");
        Inner = inner;
        ExtraIdCount = count;
        Size = checked(inner.Size + count);
        Name = $"{inner.Name}{NameSuffix}{count.ToString(CultureInfo.InvariantCulture)}";
    }

    /// <summary>The suffix that <see cref="Name"/> and <see cref="Vocabularies.Create"/> use: <c>SPEC+extra_ids=N</c>.</summary>
    public const string NameSuffix = "+extra_ids=";

    /// <summary>The wrapped vocabulary.</summary>
    public IVocabulary Inner { get; }

    /// <summary>The number of sentinel ids appended after <see cref="Inner"/>.</summary>
    public int ExtraIdCount { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public int EosId => Inner.EosId;

    /// <inheritdoc />
    public int PadId => Inner.PadId;

    /// <summary>The id of sentinel <c>&lt;extra_id_k&gt;</c>: <c>Inner.Size + ExtraIdCount - 1 - k</c>.</summary>
    /// <param name="k">The sentinel's number, in <c>[0, ExtraIdCount)</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="k"/> is outside <c>[0, ExtraIdCount)</c>.</exception>
    public int SentinelId(int k)
    {
        if ((uint)k >= (uint)ExtraIdCount)
            throw new ArgumentOutOfRangeException(nameof(k), k, $"sentinel number must be in [0, {ExtraIdCount})");
        return Size - 1 - k;
    }

    /// <summary>Whether <paramref name="id"/> is a sentinel, and if so its number k.</summary>
    /// <param name="id">Any id.</param>
    /// <param name="k">The sentinel's number, or -1 when <paramref name="id"/> is not a sentinel.</param>
    public bool IsSentinel(int id, out int k)
    {
        bool sentinel = id >= Inner.Size && id < Size;
        k = sentinel ? Size - 1 - id : -1;
        return sentinel;
    }

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int start = 0;
        foreach (Match m in SentinelText().Matches(text))
        {
            // A number too large for the count (or for int) stays ordinary text.
            if (!int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int k) || k >= ExtraIdCount)
                continue;
            if (m.Index > start) ids.AddRange(Inner.Encode(text[start..m.Index]));
            ids.Add(SentinelId(k));
            start = m.Index + m.Length;
        }
        if (start < text.Length) ids.AddRange(Inner.Encode(text[start..]));
        return [.. ids];
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        int run = 0; // start of the current run of inner ids, decoded together so multi-id characters survive
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)Size)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is outside vocabulary {Name} (0..{Size - 1})");
            if (!IsSentinel(id, out int k)) continue;
            if (i > run) sb.Append(Inner.Decode(ids[run..i]));
            sb.Append("<extra_id_").Append(k.ToString(CultureInfo.InvariantCulture)).Append('>');
            run = i + 1;
        }
        if (ids.Length > run) sb.Append(Inner.Decode(ids[run..]));
        return sb.ToString();
    }

    [GeneratedRegex(@"<extra_id_([0-9]+)>", RegexOptions.CultureInvariant)]
    private static partial Regex SentinelText();
}

/// <summary>Composes vocabularies.</summary>
public static class VocabularyExtensions
{
    /// <summary>
    /// Appends <paramref name="count"/> T5-style sentinel ids after <paramref name="inner"/>; see
    /// <see cref="ExtraIdsVocabulary"/> for the numbering (<c>&lt;extra_id_0&gt;</c> is the last id).
    /// </summary>
    /// <param name="inner">The vocabulary whose ids come first.</param>
    /// <param name="count">The number of sentinels, in <c>[0, ExtraIdsVocabulary.MaxExtraIds]</c>.</param>
    /// <returns>The wrapped vocabulary.</returns>
    public static ExtraIdsVocabulary WithExtraIds(this IVocabulary inner, int count) => new(inner, count);
}
