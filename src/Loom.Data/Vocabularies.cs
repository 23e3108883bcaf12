namespace Loom.Data;

/// <summary>Creates vocabularies from the short specs used on the command line and in run configs.</summary>
public static class Vocabularies
{
    /// <summary>
    /// Creates a vocabulary: <c>byte</c> gives a <see cref="ByteVocabulary"/>; a path ending in
    /// <c>.model</c> gives a <see cref="SentencePieceVocabulary"/>; <c>tiktoken:NAME</c> (<c>gpt2</c>,
    /// <c>cl100k_base</c> or <c>o200k_base</c>) gives a <see cref="TiktokenVocabulary"/>. Any of them
    /// followed by <c>+extra_ids=N</c> is wrapped in an <see cref="ExtraIdsVocabulary"/> with N sentinels.
    /// </summary>
    /// <param name="spec">The spec.</param>
    /// <exception cref="ArgumentException">The spec is none of these forms, names an unknown tiktoken encoding, or has a bad extra_ids count.</exception>
    /// <exception cref="FileNotFoundException">The <c>.model</c> file does not exist.</exception>
    public static IVocabulary Create(string spec)
    {
        string s = spec?.Trim() ?? "";
        int plus = s.LastIndexOf(ExtraIdsVocabulary.NameSuffix, StringComparison.OrdinalIgnoreCase);
        if (plus >= 0)
        {
            string n = s[(plus + ExtraIdsVocabulary.NameSuffix.Length)..];
            if (!int.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int count)
                || count > ExtraIdsVocabulary.MaxExtraIds)
                throw new ArgumentException(
                    $"vocabulary '{spec}': extra_ids must be a whole number in [0, {ExtraIdsVocabulary.MaxExtraIds}], not '{n}'", nameof(spec));
            return new ExtraIdsVocabulary(Create(s[..plus]), count);
        }
        if (s.Equals("byte", StringComparison.OrdinalIgnoreCase)) return new ByteVocabulary();
        if (s.StartsWith("tiktoken:", StringComparison.OrdinalIgnoreCase)) return new TiktokenVocabulary(s["tiktoken:".Length..]);
        if (s.EndsWith(".model", StringComparison.OrdinalIgnoreCase)) return new SentencePieceVocabulary(s);
        throw new ArgumentException(
            $"unknown vocabulary '{spec}': use 'byte', 'tiktoken:NAME' (gpt2, cl100k_base, o200k_base) or the path of a SentencePiece .model file", nameof(spec));
    }

    /// <summary>The SentencePiece model file a spec names (without any +extra_ids suffix), or null when it names none.</summary>
    public static string? ModelFile(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim();
        int plus = s.LastIndexOf(ExtraIdsVocabulary.NameSuffix, StringComparison.OrdinalIgnoreCase);
        string head = plus >= 0 ? s[..plus] : s;
        return head.EndsWith(".model", StringComparison.OrdinalIgnoreCase) ? head : null;
    }

    /// <summary>The spec with its model file replaced by <paramref name="file"/> (any +extra_ids suffix kept).</summary>
    public static string WithModelFile(string spec, string file)
    {
        string? current = ModelFile(spec) ?? throw new ArgumentException($"vocabulary '{spec}' names no .model file", nameof(spec));
        return file + spec.Trim()[current.Length..];
    }
}
