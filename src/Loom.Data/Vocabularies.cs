namespace Loom.Data;

/// <summary>Creates vocabularies from the short specs used on the command line and in run configs.</summary>
public static class Vocabularies
{
    /// <summary>
    /// Creates a vocabulary: <c>byte</c> gives a <see cref="ByteVocabulary"/>; a path ending in
    /// <c>.model</c> gives a <see cref="SentencePieceVocabulary"/>; <c>tiktoken:NAME</c> (<c>gpt2</c>,
    /// <c>cl100k_base</c> or <c>o200k_base</c>) gives a <see cref="TiktokenVocabulary"/>; <c>hf:PATH</c>, where
    /// PATH is a Hugging Face <c>tokenizer.json</c> or a folder that holds one, gives a
    /// <see cref="HuggingFaceVocabulary"/>. Any of them followed by <c>+extra_ids=N</c> is wrapped in an
    /// <see cref="ExtraIdsVocabulary"/> with N sentinels.
    /// </summary>
    /// <param name="spec">The spec.</param>
    /// <exception cref="ArgumentException">The spec is none of these forms, names an unknown tiktoken encoding, or has a bad extra_ids count.</exception>
    /// <exception cref="FileNotFoundException">The <c>.model</c> or <c>tokenizer.json</c> file does not exist.</exception>
    /// <exception cref="InvalidDataException">The <c>.model</c> or <c>tokenizer.json</c> file is not usable.</exception>
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
        if (s.StartsWith(HuggingFaceVocabulary.SpecPrefix, StringComparison.OrdinalIgnoreCase))
            return new HuggingFaceVocabulary(s[HuggingFaceVocabulary.SpecPrefix.Length..]);
        if (s.EndsWith(".model", StringComparison.OrdinalIgnoreCase)) return new SentencePieceVocabulary(s);
        throw new ArgumentException(
            $"unknown vocabulary '{spec}': use 'byte', 'tiktoken:NAME' (gpt2, cl100k_base, o200k_base), 'hf:PATH' (a Hugging Face tokenizer.json or its folder) or the path of a SentencePiece .model file", nameof(spec));
    }

    /// <summary>
    /// The tokenizer file a spec names (without any +extra_ids suffix), or null when it names none: a
    /// SentencePiece <c>.model</c> path, or the <c>tokenizer.json</c> of an <c>hf:</c> spec (inside the folder
    /// when the spec names a folder). Checkpoints carry this file, and <see cref="CompanionFiles"/>, with them.
    /// </summary>
    public static string? ModelFile(string spec)
    {
        string head = Head(spec, out _);
        if (head.StartsWith(HuggingFaceVocabulary.SpecPrefix, StringComparison.OrdinalIgnoreCase))
        {
            string path = head[HuggingFaceVocabulary.SpecPrefix.Length..];
            return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? path : Path.Combine(path, HuggingFaceVocabulary.TokenizerFile);
        }
        return head.EndsWith(".model", StringComparison.OrdinalIgnoreCase) ? head : null;
    }

    /// <summary>
    /// The existing files that must travel with <see cref="ModelFile"/> into the same folder: the
    /// <c>tokenizer_config.json</c> beside an <c>hf:</c> spec's <c>tokenizer.json</c>. Empty for other specs.
    /// </summary>
    public static IReadOnlyList<string> CompanionFiles(string spec)
    {
        if (ModelFile(spec) is not { } file || !Head(spec, out _).StartsWith(HuggingFaceVocabulary.SpecPrefix, StringComparison.OrdinalIgnoreCase)) return [];
        string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, HuggingFaceVocabulary.ConfigFile);
        return File.Exists(config) ? [config] : [];
    }

    /// <summary>The spec with its model file replaced by <paramref name="file"/> (any hf: prefix and +extra_ids suffix kept).</summary>
    public static string WithModelFile(string spec, string file)
    {
        ArgumentNullException.ThrowIfNull(file);
        _ = ModelFile(spec) ?? throw new ArgumentException($"vocabulary '{spec}' names no .model or tokenizer.json file", nameof(spec));
        string head = Head(spec, out string suffix);
        string prefix = head.StartsWith(HuggingFaceVocabulary.SpecPrefix, StringComparison.OrdinalIgnoreCase) ? head[..HuggingFaceVocabulary.SpecPrefix.Length] : "";
        return prefix + file + suffix;
    }

    /// <summary>
    /// Copies the spec's model file and its companions into <paramref name="directory"/> and returns the spec
    /// that names the copy by its file name, as checkpoints store it; a spec without a model file comes back unchanged.
    /// </summary>
    public static string CopyModelFiles(string spec, string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (ModelFile(spec) is not { } file) return spec;
        File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        foreach (string companion in CompanionFiles(spec)) File.Copy(companion, Path.Combine(directory, Path.GetFileName(companion)));
        return WithModelFile(spec, Path.GetFileName(file));
    }

    private static string Head(string spec, out string suffix)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim();
        int plus = s.LastIndexOf(ExtraIdsVocabulary.NameSuffix, StringComparison.OrdinalIgnoreCase);
        suffix = plus >= 0 ? s[plus..] : "";
        return plus >= 0 ? s[..plus] : s;
    }
}
