namespace Loom.Data;

/// <summary>Creates vocabularies from the short specs used on the command line and in run configs.</summary>
public static class Vocabularies
{
    /// <summary>
    /// Creates a vocabulary: <c>byte</c> gives a <see cref="ByteVocabulary"/>; a path ending in
    /// <c>.model</c> gives a <see cref="SentencePieceVocabulary"/>; <c>tiktoken:NAME</c> (<c>gpt2</c>,
    /// <c>cl100k_base</c> or <c>o200k_base</c>) gives a <see cref="TiktokenVocabulary"/>.
    /// </summary>
    /// <param name="spec">The spec.</param>
    /// <exception cref="ArgumentException">The spec is none of these forms, or names an unknown tiktoken encoding.</exception>
    /// <exception cref="FileNotFoundException">The <c>.model</c> file does not exist.</exception>
    public static IVocabulary Create(string spec)
    {
        string s = spec?.Trim() ?? "";
        if (s.Equals("byte", StringComparison.OrdinalIgnoreCase)) return new ByteVocabulary();
        if (s.StartsWith("tiktoken:", StringComparison.OrdinalIgnoreCase)) return new TiktokenVocabulary(s["tiktoken:".Length..]);
        if (s.EndsWith(".model", StringComparison.OrdinalIgnoreCase)) return new SentencePieceVocabulary(s);
        throw new ArgumentException(
            $"unknown vocabulary '{spec}': use 'byte', 'tiktoken:NAME' (gpt2, cl100k_base, o200k_base) or the path of a SentencePiece .model file", nameof(spec));
    }
}
