namespace Loom.Data;

/// <summary>Creates vocabularies from the short specs used on the command line and in run configs.</summary>
public static class Vocabularies
{
    /// <summary>
    /// Creates a vocabulary: <c>byte</c> gives a <see cref="ByteVocabulary"/>; a path ending in
    /// <c>.model</c> gives a <see cref="SentencePieceVocabulary"/>.
    /// </summary>
    /// <param name="spec">The spec.</param>
    /// <exception cref="ArgumentException">The spec is neither form.</exception>
    /// <exception cref="FileNotFoundException">The <c>.model</c> file does not exist.</exception>
    public static IVocabulary Create(string spec)
    {
        string s = spec?.Trim() ?? "";
        if (s.Equals("byte", StringComparison.OrdinalIgnoreCase)) return new ByteVocabulary();
        if (s.EndsWith(".model", StringComparison.OrdinalIgnoreCase)) return new SentencePieceVocabulary(s);
        throw new ArgumentException(
            $"unknown vocabulary '{spec}': use 'byte' or the path of a SentencePiece .model file", nameof(spec));
    }
}
