using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Loom.Data;

/// <summary>
/// A short hash that tells vocabularies apart by what they do: their name, size, special ids and how
/// they encode a fixed probe text spanning scripts, digits, whitespace and emoji. Two vocabularies
/// with the same fingerprint encode that probe identically; a retrained SentencePiece model almost
/// surely changes it.
/// </summary>
public static class VocabularyFingerprint
{
    private const string Probe =
        "The quick brown fox, 1234567890 jumps\tover\r\nthe lazy dog. Ünïcödé: naïve café — «ciao» " +
        "日本語のテキスト 中文 한국어 русский ελληνικά עברית العربية हिन्दी 🙂🚀 <extra_id_0> \u0000\u007f  spaces   ";

    /// <summary>The fingerprint of <paramref name="vocabulary"/>: 16 hex digits.</summary>
    public static string Of(IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        var text = new StringBuilder()
            .Append(vocabulary.Name).Append('|')
            .Append(vocabulary.Size.ToString(CultureInfo.InvariantCulture)).Append('|')
            .Append(vocabulary.EosId.ToString(CultureInfo.InvariantCulture)).Append('|')
            .Append(vocabulary.PadId.ToString(CultureInfo.InvariantCulture)).Append('|')
            .AppendJoin(',', vocabulary.Encode(Probe));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }
}
