using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Data;

/// <summary>
/// A checkpoint's vocabulary as the tokenizer files of a Hugging Face model folder, so that transformers (and Loom's
/// own <c>hf:</c> import) tokenizes exactly as the checkpoint does.
/// </summary>
public static class HuggingFaceTokenizerFiles
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Writes the tokenizer of a checkpoint whose manifest names <paramref name="vocabularySpec"/> into
    /// <paramref name="outputDirectory"/>: Loom's byte vocabulary as a byte-fallback BPE <c>tokenizer.json</c> with no
    /// merges (every byte is its own token, ids 0–255, then EOS and PAD); a SentencePiece model as
    /// <c>tokenizer.model</c>; a <c>tokenizer.json</c> vocabulary as itself with its <c>tokenizer_config.json</c>.
    /// </summary>
    /// <param name="vocabularySpec">The manifest's vocabulary spec (model files relative to <paramref name="checkpointDirectory"/>).</param>
    /// <param name="checkpointDirectory">The checkpoint folder the spec's files are in.</param>
    /// <param name="outputDirectory">The Hugging Face folder being written.</param>
    /// <returns>The names of the files written.</returns>
    /// <exception cref="ArgumentException">The vocabulary has no Hugging Face form Loom writes (tiktoken, extra ids).</exception>
    public static IReadOnlyList<string> Write(string vocabularySpec, string checkpointDirectory, string outputDirectory)
    {
        ArgumentNullException.ThrowIfNull(vocabularySpec);
        if (vocabularySpec.Contains(ExtraIdsVocabulary.NameSuffix, StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"the vocabulary '{vocabularySpec}' adds sentinel ids that no Hugging Face tokenizer file Loom writes holds");
        if (vocabularySpec == "byte")
        {
            File.WriteAllText(Path.Combine(outputDirectory, HuggingFaceVocabulary.TokenizerFile), ByteTokenizer().ToJsonString(Indented));
            WriteConfig(outputDirectory, eos: "</s>", pad: "<pad>", tokenizerClass: "PreTrainedTokenizerFast");
            return [HuggingFaceVocabulary.TokenizerFile, HuggingFaceVocabulary.ConfigFile];
        }
        if (Vocabularies.ModelFile(vocabularySpec) is not { } file)
            throw new ArgumentException($"the vocabulary '{vocabularySpec}' has no Hugging Face tokenizer file Loom writes (byte, SentencePiece .model and tokenizer.json vocabularies do)");
        string source = Path.Combine(checkpointDirectory, file);
        if (vocabularySpec.StartsWith(HuggingFaceVocabulary.SpecPrefix, StringComparison.OrdinalIgnoreCase))
        {
            File.Copy(source, Path.Combine(outputDirectory, HuggingFaceVocabulary.TokenizerFile));
            string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(source))!, HuggingFaceVocabulary.ConfigFile);
            if (!File.Exists(config)) return [HuggingFaceVocabulary.TokenizerFile];
            File.Copy(config, Path.Combine(outputDirectory, HuggingFaceVocabulary.ConfigFile));
            return [HuggingFaceVocabulary.TokenizerFile, HuggingFaceVocabulary.ConfigFile];
        }
        File.Copy(source, Path.Combine(outputDirectory, "tokenizer.model"));
        // The special pieces are in the model file itself, where the slow tokenizer reads them.
        WriteConfig(outputDirectory, eos: null, pad: null, tokenizerClass: "LlamaTokenizer");
        return ["tokenizer.model", HuggingFaceVocabulary.ConfigFile];
    }

    /// <summary>Loom's byte vocabulary as a tokenizer.json: BPE with byte fallback and no merges, so each UTF-8 byte is one token.</summary>
    private static JsonObject ByteTokenizer()
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[string.Create(CultureInfo.InvariantCulture, $"<0x{b:X2}>")] = b;
        vocab["</s>"] = ByteVocabulary.Eos;
        vocab["<pad>"] = ByteVocabulary.Pad;
        static JsonObject Special(int id, string content) => new()
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
        };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Special(ByteVocabulary.Eos, "</s>"), Special(ByteVocabulary.Pad, "<pad>")),
            ["normalizer"] = null,
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = new JsonArray(new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" }) },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = true,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(),
            },
        };
    }

    private static void WriteConfig(string directory, string? eos, string? pad, string tokenizerClass)
    {
        var config = new JsonObject
        {
            ["add_bos_token"] = false,
            ["add_eos_token"] = false,
            ["bos_token"] = null,
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = 1_000_000_000_000_000_019_884_624_838_656d,
            ["tokenizer_class"] = tokenizerClass,
        };
        if (eos is not null) config["eos_token"] = eos;
        if (pad is not null) config["pad_token"] = pad;
        File.WriteAllText(Path.Combine(directory, HuggingFaceVocabulary.ConfigFile), config.ToJsonString(Indented));
    }
}
