using System.Text;

namespace Loom.Data;

/// <summary>Loads a corpus from the user's own UTF-8 text: one file, or every text file under a folder.</summary>
public static class TextFiles
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Loads one document per text file. A folder is searched recursively, skipping hidden entries
    /// and files that are not UTF-8 text (any NUL byte or invalid UTF-8); files are taken in ordinal
    /// order of their relative paths, so the split is reproducible.
    /// </summary>
    /// <param name="fileOrDirectory">A UTF-8 text file or a folder of them.</param>
    /// <param name="validationFraction">
    /// The share held out, in <c>[0, 1)</c>: the last documents (at least one, and never all), or, for
    /// a single document, the last part of its text cut at the line boundary nearest that share.
    /// </param>
    /// <returns>The corpus, named after the file or folder.</returns>
    /// <exception cref="FileNotFoundException">The path does not exist.</exception>
    /// <exception cref="InvalidDataException">The path holds no UTF-8 text.</exception>
    public static TextCorpus Load(string fileOrDirectory, double validationFraction = 0.1)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(fileOrDirectory);
        if (!(validationFraction >= 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, $"validation fraction must be in [0, 1), got {validationFraction}");
        string full = Path.GetFullPath(fileOrDirectory);
        string name = Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar));

        List<string> documents;
        if (File.Exists(full))
        {
            documents = [TryReadText(full) ?? throw new InvalidDataException($"'{full}' is not UTF-8 text; pass a UTF-8 text file or folder via --data")];
        }
        else if (Directory.Exists(full))
        {
            var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System };
            documents = [.. Directory.EnumerateFiles(full, "*", options)
                .Order(StringComparer.Ordinal)
                .Select(TryReadText)
                .OfType<string>()];
            if (documents.Count == 0)
                throw new InvalidDataException($"'{full}' holds no UTF-8 text files; pass a file or folder of .txt/.md files via --data");
        }
        else
        {
            throw new FileNotFoundException($"'{full}' does not exist; pass an existing text file or folder via --data", full);
        }

        var (train, validation) = Split(documents, validationFraction);
        return new TextCorpus(name, train, validation);
    }

    /// <summary>Splits documents: the last share of them, or the tail of a single one, goes to validation.</summary>
    internal static (IReadOnlyList<string> Train, IReadOnlyList<string> Validation) Split(IReadOnlyList<string> documents, double fraction)
    {
        if (fraction == 0 || documents.Count == 0) return (documents, []);
        if (documents.Count == 1)
        {
            string text = documents[0];
            int cut = CutPoint(text, fraction);
            return ([text[..cut]], cut < text.Length ? [text[cut..]] : []);
        }
        int held = Math.Clamp((int)Math.Round(documents.Count * fraction, MidpointRounding.AwayFromZero), 1, documents.Count - 1);
        int keep = documents.Count - held;
        return ([.. documents.Take(keep)], [.. documents.Skip(keep)]);
    }

    /// <summary>The index where validation text starts: just after the newline nearest the target share.</summary>
    private static int CutPoint(string text, double fraction)
    {
        int target = Math.Clamp((int)Math.Round(text.Length * (1 - fraction)), 0, text.Length);
        int after = target < text.Length ? text.IndexOf('\n', target) : -1;
        int before = target > 0 ? text.LastIndexOf('\n', target - 1) : -1;
        // A cut just after a newline must leave text on both sides.
        bool afterOk = after >= 0 && after + 1 < text.Length;
        bool beforeOk = before >= 0 && before + 1 < text.Length;
        if (afterOk && (!beforeOk || after + 1 - target <= target - (before + 1))) return after + 1;
        if (beforeOk) return before + 1;
        // No usable line boundary: cut mid-line, but never inside a surrogate pair.
        int cut = Math.Clamp(target, 1, text.Length);
        if (cut < text.Length && char.IsLowSurrogate(text[cut])) cut--;
        return cut;
    }

    private static string? TryReadText(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // unreadable files in a folder are skipped like binary ones
        }
        if (bytes.AsSpan().Contains((byte)0)) return null;
        ReadOnlySpan<byte> body = bytes.AsSpan();
        if (body.StartsWith("\uFEFF"u8)) body = body[3..]; // drop a UTF-8 byte order mark
        try
        {
            string text = StrictUtf8.GetString(body);
            return text.Length == 0 ? null : text;
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
