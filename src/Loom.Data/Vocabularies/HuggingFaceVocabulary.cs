using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Data;

/// <summary>
/// A Hugging Face tokenizer read from its <c>tokenizer.json</c> (the <c>tokenizers</c> library's file), with
/// special tokens from the <c>tokenizer_config.json</c> beside it when there is one. It reproduces the
/// <c>tokenizers</c> pipeline for BPE models, those with byte fallback such as Llama 2, Mistral and Gemma and byte-level
/// ones such as GPT-2, Llama 3 and Qwen 2.5, and for Unigram models: added tokens, the normalizer, the pre-tokenizer, the
/// model and the decoder.
/// </summary>
/// <remarks>
/// <para>Supported parts: model <c>BPE</c> (without dropout, continuing-subword prefix or end-of-word suffix;
/// with <c>byte_fallback</c>, <c>fuse_unk</c> and <c>ignore_merges</c>) and <c>Unigram</c> (Viterbi, unknown runs
/// fused, with <c>byte_fallback</c>; it needs <c>unk_id</c>); normalizers <c>Sequence</c>,
/// <c>Prepend</c>, <c>Replace</c>, <c>NFC</c>, <c>NFD</c>, <c>NFKC</c>, <c>NFKD</c> and <c>Lowercase</c>;
/// pre-tokenizers <c>Sequence</c>, <c>Metaspace</c>, <c>WhitespaceSplit</c>, <c>Split</c> (a string or a regex, matched by code point as
/// the Rust library does, with any behaviour) and <c>ByteLevel</c> (GPT-2's regex and byte-to-character alphabet);
/// decoders <c>Sequence</c>, <c>Replace</c>, <c>ByteFallback</c>, <c>Fuse</c>, <c>Strip</c>, <c>Metaspace</c> and
/// <c>ByteLevel</c>; post-processors are only read for the BOS token. Any other part (a WordPiece model, the
/// <c>Precompiled</c> normalizer of SentencePiece conversions) is refused with an <see cref="InvalidDataException"/>.</para>
/// <para>EOS, PAD and BOS are <c>tokenizer_config.json</c>'s <c>eos_token</c>, <c>pad_token</c> and
/// <c>bos_token</c>. Without that file, BOS is the special token the post-processor puts first and EOS is the
/// first of <c>&lt;/s&gt;</c>, <c>&lt;eos&gt;</c>, <c>&lt;|endoftext|&gt;</c> and <c>&lt;|end_of_text|&gt;</c>
/// that is an added token. A tokenizer without a pad token (Llama 2, Mistral) gets an extra PAD id after the
/// highest id, as <see cref="SentencePieceVocabulary"/> does, so that padding never masks EOS.</para>
/// <para>As in <c>tokenizers</c>, <see cref="Encode"/> turns the text of an added token (e.g.
/// <c>&lt;start_of_turn&gt;</c>) into that token, and <see cref="Decode"/> renders added tokens as their text,
/// except EOS and PAD, which it skips.</para>
/// </remarks>
public sealed class HuggingFaceVocabulary : IVocabulary
{
    /// <summary>The prefix of this vocabulary's specs: <c>hf:PATH</c>.</summary>
    public const string SpecPrefix = "hf:";

    /// <summary>The file name a folder spec reads.</summary>
    public const string TokenizerFile = "tokenizer.json";

    /// <summary>The file beside <see cref="TokenizerFile"/> that names the special tokens and holds the chat template.</summary>
    public const string ConfigFile = "tokenizer_config.json";

    private static readonly string[] EosCandidates = ["</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>"];

    private readonly IModel _model;
    private readonly Func<string, string> _normalize;
    private readonly Func<string, bool, IEnumerable<string>> _preTokenize;
    private readonly Func<List<string>, List<string>>? _decode;
    private readonly AddedTokenMatcher _added;
    private readonly AddedTokenMatcher _addedNormalized;
    private readonly string?[] _tokens;
    private readonly Dictionary<string, int> _addedIds;

    /// <summary>Loads a <c>tokenizer.json</c>, or the one inside a folder.</summary>
    /// <param name="path">The <c>tokenizer.json</c> file, or a folder that holds one.</param>
    /// <exception cref="FileNotFoundException">The file (or the folder's <c>tokenizer.json</c>) does not exist.</exception>
    /// <exception cref="InvalidDataException">The file, or the <c>tokenizer_config.json</c> beside it, is malformed or uses an unsupported part.</exception>
    public HuggingFaceVocabulary(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = ResolveFile(path);
        if (!File.Exists(full))
            throw new FileNotFoundException(
                $"Hugging Face tokenizer '{full}' does not exist; pass the path of a tokenizer.json file or of a folder that holds one", full);
        TokenizerPath = full;
        string config = Path.Combine(Path.GetDirectoryName(full)!, ConfigFile);
        ConfigPath = File.Exists(config) ? config : null;

        try
        {
            using (var stream = File.OpenRead(full))
            using (var document = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 }))
            {
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new FormatException("the top level is not a JSON object");
                JsonElement model = Required(root, "model");
                _model = Str(model, "type") == "Unigram" ? UnigramModel.Read(model) : BpeModel.Read(model);
                var added = new List<AddedToken>();
                if (root.TryGetProperty("added_tokens", out JsonElement addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
                    foreach (JsonElement t in addedTokens.EnumerateArray()) added.Add(AddedToken.Read(t));
                AddedTokens = added;
                _normalize = Normalizers.Read(Optional(root, "normalizer"));
                _preTokenize = PreTokenizers.Read(Optional(root, "pre_tokenizer"));
                _decode = Decoders.Read(Optional(root, "decoder"));
                BosId = PostProcessorBos(Optional(root, "post_processor"));
            }
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException or ArgumentException or OverflowException)
        {
            throw new InvalidDataException($"'{full}' is not a usable Hugging Face tokenizer.json ({OneLine(e.Message)})", e);
        }

        _addedIds = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in AddedTokens) _addedIds[t.Content] = t.Id;
        _added = new AddedTokenMatcher(AddedTokens.Where(t => !t.Normalized));
        _addedNormalized = new AddedTokenMatcher(AddedTokens.Where(t => t.Normalized));
        int highest = Math.Max(_model.Tokens.Length - 1, AddedTokens.Count == 0 ? -1 : AddedTokens.Max(t => t.Id));
        _tokens = new string?[highest + 1];
        for (int i = 0; i < _model.Tokens.Length; i++) _tokens[i] = _model.Tokens[i];
        foreach (var t in AddedTokens) _tokens[t.Id] = t.Content;

        int? eos = null, pad = null;
        if (ConfigPath is not null)
        {
            try
            {
                using var stream = File.OpenRead(ConfigPath);
                using var document = JsonDocument.Parse(stream);
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new FormatException("the top level is not a JSON object");
                int? Token(string key) => ConfigToken(root, key) is { } content
                    ? TokenId(content) ?? throw new FormatException($"{key} '{content}' is not a token of {Path.GetFileName(full)}")
                    : null;
                eos = Token("eos_token");
                pad = Token("pad_token");
                ConfigPadToken = ConfigToken(root, "pad_token");
                BosId = Token("bos_token") ?? BosId;
                AddBosToken = root.TryGetProperty("add_bos_token", out JsonElement addBos) && addBos.ValueKind == JsonValueKind.True;
                AddEosToken = root.TryGetProperty("add_eos_token", out JsonElement addEos) && addEos.ValueKind == JsonValueKind.True;
                if (root.TryGetProperty("chat_template", out JsonElement template) && template.ValueKind == JsonValueKind.String)
                    ChatTemplate = template.GetString();
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"'{ConfigPath}' is not a usable Hugging Face tokenizer_config.json ({OneLine(e.Message)})", e);
            }
        }
        else AddBosToken = BosId is not null;
        eos ??= EosCandidates.Select(c => _addedIds.TryGetValue(c, out int id) ? id : (int?)null).FirstOrDefault(id => id is not null);
        EosId = eos ?? throw new InvalidDataException(
            $"'{full}' names no end-of-sequence token (none of {string.Join(" ", EosCandidates)} is an added token); put a {ConfigFile} with eos_token beside it");
        int next = _tokens.Length;
        PadId = pad ?? next++;
        Size = next;
        Name = SpecPrefix + Path.GetFileName(full);
    }

    /// <summary>The <c>tokenizer.json</c> a spec path names: the path itself, or <c>tokenizer.json</c> inside it when it is not a <c>.json</c> file.</summary>
    /// <param name="path">A file or folder path.</param>
    /// <returns>The full path of the tokenizer file; it need not exist.</returns>
    public static string ResolveFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        return Directory.Exists(full) || !full.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? Path.Combine(full, TokenizerFile) : full;
    }

    /// <summary>The full path of the loaded <c>tokenizer.json</c>.</summary>
    public string TokenizerPath { get; }

    /// <summary>The pad token tokenizer_config.json names, or null when it names none (Loom then adds one after the last id).</summary>
    public string? ConfigPadToken { get; }

    /// <summary>The full path of the <c>tokenizer_config.json</c> read beside it, or null when there is none.</summary>
    public string? ConfigPath { get; }

    /// <summary>The tokens of <c>added_tokens</c> (special or not), in file order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>The beginning-of-sequence id, or null when the tokenizer has none.</summary>
    public int? BosId { get; }

    /// <summary>Whether the tokenizer's own encode would put BOS first (<c>add_bos_token</c>; <see cref="Encode"/> never does).</summary>
    public bool AddBosToken { get; }

    /// <summary>Whether the tokenizer's own encode would put EOS last (<c>add_eos_token</c>; <see cref="Encode"/> never does).</summary>
    public bool AddEosToken { get; }

    /// <summary>The Jinja chat template of <c>tokenizer_config.json</c>, unrendered, or null.</summary>
    public string? ChatTemplate { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public int EosId { get; }

    /// <inheritdoc />
    public int PadId { get; }

    /// <summary>The id of a token (an added token or a piece of the model's vocabulary), or null when there is none.</summary>
    /// <param name="token">The token's text, e.g. <c>&lt;s&gt;</c> or <c>▁Hello</c>.</param>
    public int? TokenId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedIds.TryGetValue(token, out int id)) return id;
        return _model.Vocab.TryGetValue(token, out id) ? id : null;
    }

    /// <summary>The text of the token with id <paramref name="id"/>, or null for an id without one (such as the extra PAD id).</summary>
    public string? Token(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : null;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        foreach (var (start, length, addedId) in _added.Split(text))
        {
            if (addedId >= 0) { ids.Add(addedId); continue; }
            string normalized = _normalize(text.Substring(start, length));
            foreach (var (nStart, nLength, nAddedId) in _addedNormalized.Split(normalized))
            {
                if (nAddedId >= 0) { ids.Add(nAddedId); continue; }
                foreach (string word in _preTokenize(normalized.Substring(nStart, nLength), start == 0 && nStart == 0))
                    _model.Tokenize(word, ids);
            }
        }
        return [.. ids];
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)Size)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is outside vocabulary {Name} (0..{Size - 1})");
            if (id == EosId || id == PadId) continue;
            if (Token(id) is { } token) tokens.Add(token);
        }
        // tokenizers joins the tokens with spaces when the file has no decoder.
        return _decode is null ? string.Join(' ', tokens) : string.Concat(_decode(tokens));
    }

    private int? PostProcessorBos(JsonElement? processor)
    {
        if (processor is not { ValueKind: JsonValueKind.Object } p) return null;
        if (Str(p, "type") == "Sequence" && p.TryGetProperty("processors", out JsonElement processors) && processors.ValueKind == JsonValueKind.Array)
            return processors.EnumerateArray().Select(q => PostProcessorBos(q)).FirstOrDefault(id => id is not null);
        if (Str(p, "type") != "TemplateProcessing") return null;
        if (!p.TryGetProperty("single", out JsonElement single) || single.ValueKind != JsonValueKind.Array) return null;
        foreach (JsonElement piece in single.EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out _)) return null; // a special token only counts before the text
            if (piece.TryGetProperty("SpecialToken", out JsonElement special) && Str(special, "id") is { } name
                && p.TryGetProperty("special_tokens", out JsonElement map) && map.TryGetProperty(name, out JsonElement entry)
                && entry.TryGetProperty("ids", out JsonElement idList) && idList.ValueKind == JsonValueKind.Array && idList.GetArrayLength() == 1)
                return idList[0].GetInt32();
        }
        return null;
    }

    private static string? ConfigToken(JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out JsonElement value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object => Str(value, "content") ?? throw new FormatException($"{key} has no content"),
            JsonValueKind.Null => null,
            _ => throw new FormatException($"{key} is neither a string nor an object"),
        };
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");

    private static JsonElement Required(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value : throw new FormatException($"'{name}' is missing");

    private static JsonElement? Optional(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static string RequiredString(JsonElement e, string name) => Str(e, name) ?? throw new FormatException($"'{name}' is missing or not a string");

    private static bool Bool(JsonElement e, string name, bool fallback) =>
        e.TryGetProperty(name, out JsonElement value) ? value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Null => fallback,
            _ => throw new FormatException($"'{name}' is not true or false"),
        } : fallback;

    /// <summary>A <c>pattern</c> object: <c>{"String": "..."}</c> (literal) or <c>{"Regex": "..."}</c>.</summary>
    private static Regex Pattern(JsonElement e)
    {
        JsonElement pattern = Required(e, "pattern");
        if (Str(pattern, "String") is { } literal) return new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant);
        if (Str(pattern, "Regex") is { } regex) return new Regex(regex, RegexOptions.CultureInvariant);
        throw new FormatException("a pattern is neither {\"String\": ...} nor {\"Regex\": ...}");
    }

    /// <summary>One entry of <c>added_tokens</c>.</summary>
    /// <param name="Id">The token's id.</param>
    /// <param name="Content">The token's text.</param>
    /// <param name="Special">Whether the tokenizer calls it special (skipped by its <c>skip_special_tokens</c>).</param>
    /// <param name="Normalized">Whether it is matched in the normalized text rather than the raw text.</param>
    /// <param name="SingleWord">Whether it only matches as a whole word.</param>
    /// <param name="LStrip">Whether it takes the whitespace on its left.</param>
    /// <param name="RStrip">Whether it takes the whitespace on its right.</param>
    public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool SingleWord, bool LStrip, bool RStrip)
    {
        internal static AddedToken Read(JsonElement e)
        {
            int id = Required(e, "id").GetInt32();
            if (id < 0) throw new FormatException($"added token id {id} is negative");
            string content = RequiredString(e, "content");
            if (content.Length == 0) throw new FormatException($"added token {id} is empty");
            bool special = Bool(e, "special", false);
            return new AddedToken(id, content, special, Bool(e, "normalized", !special), Bool(e, "single_word", false), Bool(e, "lstrip", false), Bool(e, "rstrip", false));
        }
    }

    /// <summary>Splits text on added tokens, leftmost-longest as the <c>tokenizers</c> library does.</summary>
    private sealed class AddedTokenMatcher
    {
        private sealed class Node
        {
            public Dictionary<char, Node>? Next;
            public AddedToken? Token;
        }

        private readonly Node _root = new();
        private readonly bool _empty = true;

        public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
        {
            foreach (var token in tokens)
            {
                Node node = _root;
                foreach (char c in token.Content)
                {
                    node.Next ??= [];
                    if (!node.Next.TryGetValue(c, out Node? child)) node.Next[c] = child = new Node();
                    node = child;
                }
                node.Token ??= token;
                _empty = false;
            }
        }

        /// <summary>The pieces of <paramref name="text"/> in order: (start, length, added token id or -1 for ordinary text).</summary>
        public List<(int Start, int Length, int Id)> Split(string text)
        {
            var pieces = new List<(int, int, int)>();
            if (_empty) { if (text.Length > 0) pieces.Add((0, text.Length, -1)); return pieces; }
            int done = 0, i = 0;
            while (i < text.Length)
            {
                AddedToken? found = null;
                int end = i;
                Node node = _root;
                for (int j = i; j < text.Length && node.Next is not null && node.Next.TryGetValue(text[j], out Node? child); j++)
                {
                    node = child;
                    if (node.Token is not null) { found = node.Token; end = j + 1; }
                }
                if (found is null || (found.SingleWord && !IsSingleWord(text, i, end))) { i++; continue; }
                int start = i;
                if (found.LStrip) while (start > done && char.IsWhiteSpace(text[start - 1])) start--;
                if (found.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
                if (start > done) pieces.Add((done, start - done, -1));
                pieces.Add((start, end - start, found.Id));
                done = i = end;
            }
            if (done < text.Length) pieces.Add((done, text.Length - done, -1));
            return pieces;
        }

        private static bool IsWord(char c) => char.IsLetterOrDigit(c) || c == '_';

        private static bool IsSingleWord(string text, int start, int end) =>
            (start == 0 || !IsWord(text[start - 1])) && (end == text.Length || !IsWord(text[end]));
    }

    /// <summary>
    /// A regex matched by code point, as the Rust <c>tokenizers</c> (Oniguruma) and JavaScript (<c>u</c> flag) match: .NET
    /// matches UTF-16 units, so <c>\p{L}</c> would miss a letter outside the BMP such as 𝔘. Each surrogate pair is matched as
    /// one stand-in BMP character of the same Unicode category (one the pattern does not name), and the matches are mapped back.
    /// </summary>
    internal sealed class CodePointRegex
    {
        private readonly Regex _regex;
        private readonly char[] _standIns = new char[32];

        public CodePointRegex(Regex regex)
        {
            _regex = regex;
            string pattern = regex.ToString();
            for (int c = 0xFFFD; c >= 0x80; c--)
            {
                if (char.IsSurrogate((char)c) || char.IsWhiteSpace((char)c) || pattern.Contains((char)c, StringComparison.Ordinal)) continue;
                int category = (int)CharUnicodeInfo.GetUnicodeCategory((char)c);
                if (_standIns[category] == '\0') _standIns[category] = (char)c;
            }
        }

        /// <summary>The matches in <paramref name="s"/>, left to right, as (index, length) in UTF-16 units of <paramref name="s"/>.</summary>
        public IEnumerable<(int Index, int Length)> Matches(string s)
        {
            bool pairs = false;
            for (int i = 0; i + 1 < s.Length && !pairs; i++) pairs = char.IsSurrogatePair(s[i], s[i + 1]);
            if (!pairs)
            {
                foreach (Match m in _regex.Matches(s)) yield return (m.Index, m.Length);
                yield break;
            }
            var text = new StringBuilder(s.Length);
            var starts = new List<int>(s.Length + 1); // where each character of text starts in s
            for (int i = 0; i < s.Length; i++)
            {
                starts.Add(i);
                if (i + 1 < s.Length && char.IsSurrogatePair(s[i], s[i + 1]))
                {
                    char standIn = _standIns[(int)CharUnicodeInfo.GetUnicodeCategory(s, i)];
                    text.Append(standIn == '\0' ? s[i] : standIn);
                    i++;
                }
                else text.Append(s[i]);
            }
            starts.Add(s.Length);
            foreach (Match m in _regex.Matches(text.ToString()))
                yield return (starts[m.Index], starts[m.Index + m.Length] - starts[m.Index]);
        }
    }

    /// <summary>GPT-2's byte-level alphabet (<c>bytes_to_unicode</c>): each byte as a printable character, and back.</summary>
    private static class ByteLevel
    {
        private static readonly char[] ByteChars = BuildByteChars();
        private static readonly int[] CharBytes = BuildCharBytes();

        private static char[] BuildByteChars()
        {
            var chars = new char[256];
            int n = 0;
            for (int b = 0; b < 256; b++)
            {
                bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
                chars[b] = printable ? (char)b : (char)(256 + n++);
            }
            return chars;
        }

        private static int[] BuildCharBytes()
        {
            var bytes = new int[512];
            Array.Fill(bytes, -1);
            for (int b = 0; b < 256; b++) bytes[ByteChars[b]] = b;
            return bytes;
        }

        /// <summary>The word's UTF-8 bytes as byte-level characters.</summary>
        public static string ToChars(string word)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(word);
            return string.Create(utf8.Length, utf8, (span, bytes) =>
            {
                for (int i = 0; i < bytes.Length; i++) span[i] = ByteChars[bytes[i]];
            });
        }

        /// <summary>tokenizers' <c>ByteLevel</c> decoder: the bytes of all tokens (a token with a character outside the alphabet,
        /// such as an added token, gives its own UTF-8), read as UTF-8 with U+FFFD for invalid sequences.</summary>
        public static string FromChars(List<string> tokens)
        {
            var bytes = new List<byte>();
            foreach (string t in tokens)
            {
                if (t.All(c => c < CharBytes.Length && CharBytes[c] >= 0))
                    foreach (char c in t) bytes.Add((byte)CharBytes[c]);
                else bytes.AddRange(Encoding.UTF8.GetBytes(t));
            }
            return Encoding.UTF8.GetString([.. bytes]);
        }
    }

    /// <summary>A model of <c>tokenizer.json</c>: its pieces, and the ids of one pre-tokenized word.</summary>
    private interface IModel
    {
        Dictionary<string, int> Vocab { get; }
        string?[] Tokens { get; }
        void Tokenize(string word, List<int> ids);
    }

    /// <summary>
    /// The Unigram model, as <c>tokenizers</c>' <c>Unigram::encode_optimized</c> (SentencePiece's Viterbi): the split of
    /// the word into pieces with the highest total score; a character no piece starts with costs the lowest score minus
    /// 10 and becomes <c>unk</c>, runs of them fused into one, which byte fallback turns into byte pieces when it can.
    /// </summary>
    private sealed class UnigramModel : IModel
    {
        private sealed class Node
        {
            public Dictionary<char, Node>? Next;
            public int Id = -1;
        }

        private readonly Node _root = new();

        public required Dictionary<string, int> Vocab { get; init; }
        public required string?[] Tokens { get; init; }
        public required double[] Scores { get; init; }
        public required int UnkId { get; init; }
        public required bool ByteFallback { get; init; }
        public required double UnkScore { get; init; }

        public static UnigramModel Read(JsonElement e)
        {
            JsonElement vocabJson = Required(e, "vocab");
            if (vocabJson.ValueKind != JsonValueKind.Array || vocabJson.GetArrayLength() == 0) throw new FormatException("Unigram vocab is not a non-empty array");
            int n = vocabJson.GetArrayLength();
            var tokens = new string?[n];
            var scores = new double[n];
            var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
            int id = 0;
            foreach (JsonElement piece in vocabJson.EnumerateArray())
            {
                if (piece.ValueKind != JsonValueKind.Array || piece.GetArrayLength() != 2 || piece[0].ValueKind != JsonValueKind.String)
                    throw new FormatException($"Unigram vocab entry {id} is not [piece, score]");
                tokens[id] = piece[0].GetString()!;
                scores[id] = piece[1].GetDouble();
                vocab[tokens[id]!] = id; // a repeated piece maps to its last id, as tokenizers' token_to_ids
                id++;
            }
            if (!e.TryGetProperty("unk_id", out JsonElement unkJson) || unkJson.ValueKind != JsonValueKind.Number)
                throw new FormatException("a Unigram model without unk_id is not supported");
            int unk = unkJson.GetInt32();
            if ((uint)unk >= (uint)n) throw new FormatException($"Unigram unk_id {unk} is outside the vocabulary");
            var model = new UnigramModel { Vocab = vocab, Tokens = tokens, Scores = scores, UnkScore = scores.Min() - 10.0, UnkId = unk, ByteFallback = Bool(e, "byte_fallback", false) };
            foreach (var (piece, pieceId) in vocab)
            {
                if (piece.Length == 0) continue;
                Node node = model._root;
                foreach (char c in piece)
                {
                    node.Next ??= [];
                    if (!node.Next.TryGetValue(c, out Node? child)) node.Next[c] = child = new Node();
                    node = child;
                }
                node.Id = pieceId;
            }
            return model;
        }

        public void Tokenize(string word, List<int> ids)
        {
            if (word.Length == 0) return;
            int size = word.Length;
            double unkScore = UnkScore;
            var score = new double[size + 1];
            var from = new int[size + 1];
            var best = new int[size + 1];
            Array.Fill(from, -1);
            for (int start = 0; start < size;)
            {
                int charLength = char.IsHighSurrogate(word[start]) && start + 1 < size && char.IsLowSurrogate(word[start + 1]) ? 2 : 1;
                bool single = false;
                Node node = _root;
                for (int j = start; j < size && node.Next is not null && node.Next.TryGetValue(word[j], out Node? child); j++)
                {
                    node = child;
                    if (node.Id < 0) continue;
                    int end = j + 1;
                    double candidate = score[start] + Scores[node.Id];
                    if (from[end] < 0 || candidate > score[end]) (score[end], from[end], best[end]) = (candidate, start, node.Id);
                    single |= end - start == charLength;
                }
                if (!single)
                {
                    int end = start + charLength;
                    double candidate = score[start] + unkScore;
                    if (from[end] < 0 || candidate > score[end]) (score[end], from[end], best[end]) = (candidate, start, UnkId);
                }
                start += charLength;
            }

            // Back from the end: pieces, with each run of unknowns fused into one string.
            var pieces = new List<(int Start, int End, bool Unknown)>();
            for (int end = size; end > 0; end = from[end])
            {
                int start = from[end];
                bool unknown = best[end] == UnkId;
                if (unknown && pieces.Count > 0 && pieces[^1].Unknown) pieces[^1] = (start, pieces[^1].End, true);
                else pieces.Add((start, end, unknown));
            }
            pieces.Reverse();
            foreach (var (start, end, _) in pieces)
            {
                string piece = word[start..end];
                if (Vocab.TryGetValue(piece, out int id)) { ids.Add(id); continue; }
                if (ByteFallback)
                {
                    byte[] bytes = Encoding.UTF8.GetBytes(piece);
                    var byteIds = new List<int>(bytes.Length);
                    foreach (byte b in bytes)
                        if (Vocab.TryGetValue($"<0x{b:X2}>", out int byteId)) byteIds.Add(byteId);
                        else break;
                    if (byteIds.Count == bytes.Length) { ids.AddRange(byteIds); continue; }
                }
                ids.Add(UnkId);
            }
        }
    }

    /// <summary>The BPE model: vocabulary, ranked merges, byte fallback and unknown-token handling.</summary>
    private sealed class BpeModel : IModel
    {
        public required Dictionary<string, int> Vocab { get; init; }
        public required string?[] Tokens { get; init; }
        public required Dictionary<long, (int Rank, int NewId)> Merges { get; init; }
        public required int[]? ByteIds { get; init; }
        public required int? UnkId { get; init; }
        public required bool FuseUnk { get; init; }
        public required bool IgnoreMerges { get; init; }

        public static BpeModel Read(JsonElement e)
        {
            string type = Str(e, "type") ?? "BPE";
            if (type != "BPE")
                throw new FormatException($"model type {type} is not supported (only BPE and Unigram are)");
            if (e.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
                throw new FormatException("BPE dropout is not supported");
            if (Str(e, "continuing_subword_prefix") is { Length: > 0 } || Str(e, "end_of_word_suffix") is { Length: > 0 })
                throw new FormatException("BPE continuing_subword_prefix and end_of_word_suffix are not supported");

            JsonElement vocabJson = Required(e, "vocab");
            if (vocabJson.ValueKind != JsonValueKind.Object) throw new FormatException("model.vocab is not an object");
            var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
            int highest = -1;
            foreach (JsonProperty p in vocabJson.EnumerateObject())
            {
                int id = p.Value.GetInt32();
                if (id < 0) throw new FormatException($"vocabulary id {id} of '{p.Name}' is negative");
                vocab[p.Name] = id;
                highest = Math.Max(highest, id);
            }
            var tokens = new string?[highest + 1];
            foreach (var (token, id) in vocab) tokens[id] = token;

            int Id(string token) => vocab.TryGetValue(token, out int id) ? id : throw new FormatException($"merge part '{token}' is not in the vocabulary");
            var merges = new Dictionary<long, (int, int)>();
            JsonElement mergesJson = Required(e, "merges");
            if (mergesJson.ValueKind != JsonValueKind.Array) throw new FormatException("model.merges is not an array");
            int rank = 0;
            foreach (JsonElement m in mergesJson.EnumerateArray())
            {
                string a, b;
                if (m.ValueKind == JsonValueKind.String)
                {
                    // The older form "a b": both parts are space-free, since the pre-tokenizer or the normalizer replaced spaces.
                    string s = m.GetString()!;
                    int space = s.IndexOf(' ', StringComparison.Ordinal);
                    if (space <= 0 || space != s.LastIndexOf(' ') || space == s.Length - 1) throw new FormatException($"merge {rank} '{s}' is not two tokens separated by one space");
                    (a, b) = (s[..space], s[(space + 1)..]);
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                    (a, b) = (m[0].GetString()!, m[1].GetString()!);
                else throw new FormatException($"merge {rank} is neither \"a b\" nor [\"a\", \"b\"]");
                int newId = vocab.TryGetValue(a + b, out int merged) ? merged : throw new FormatException($"merge {rank} '{a}' + '{b}' makes a token that is not in the vocabulary");
                merges[Key(Id(a), Id(b))] = (rank, newId);
                rank++;
            }

            int[]? byteIds = null;
            if (Bool(e, "byte_fallback", false))
            {
                byteIds = new int[256];
                for (int v = 0; v < 256; v++)
                    byteIds[v] = vocab.TryGetValue($"<0x{v:X2}>", out int id) ? id : -1;
            }
            int? unk = Str(e, "unk_token") is { } unkToken
                ? vocab.TryGetValue(unkToken, out int u) ? u : throw new FormatException($"unk_token '{unkToken}' is not in the vocabulary")
                : null;
            return new BpeModel
            {
                Vocab = vocab, Tokens = tokens, Merges = merges, ByteIds = byteIds, UnkId = unk,
                FuseUnk = Bool(e, "fuse_unk", false), IgnoreMerges = Bool(e, "ignore_merges", false),
            };
        }

        private static long Key(int a, int b) => ((long)a << 32) | (uint)b;

        private struct Symbol
        {
            public int Id, Prev, Next;
            public bool Removed;
        }

        /// <summary>Appends the ids of one pre-tokenized word, as <c>tokenizers</c>' <c>BPE::tokenize</c> does.</summary>
        public void Tokenize(string word, List<int> ids)
        {
            if (word.Length == 0) return;
            if (IgnoreMerges && Vocab.TryGetValue(word, out int whole)) { ids.Add(whole); return; }

            var symbols = new List<Symbol>(word.Length);
            void Add(int id)
            {
                int n = symbols.Count;
                if (n > 0) { var last = symbols[n - 1]; last.Next = n; symbols[n - 1] = last; }
                symbols.Add(new Symbol { Id = id, Prev = n - 1, Next = -1 });
            }
            int? unk = null; // a pending unknown id, fused with the next unknown character when FuseUnk
            Span<byte> utf8 = stackalloc byte[4];
            for (int i = 0; i < word.Length;)
            {
                int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
                string c = word.Substring(i, length);
                i += length;
                if (Vocab.TryGetValue(c, out int id))
                {
                    if (unk is { } u) { Add(u); unk = null; }
                    Add(id);
                    continue;
                }
                if (ByteIds is not null && Rune.DecodeFromUtf16(c, out Rune rune, out _) == System.Buffers.OperationStatus.Done)
                {
                    int count = rune.EncodeToUtf8(utf8);
                    bool all = true;
                    for (int k = 0; k < count; k++) all &= ByteIds[utf8[k]] >= 0;
                    if (all)
                    {
                        for (int k = 0; k < count; k++) Add(ByteIds[utf8[k]]);
                        continue;
                    }
                }
                if (UnkId is { } unkId)
                {
                    if (unk is not null && !FuseUnk) Add(unk.Value);
                    unk = unkId;
                }
            }
            if (unk is { } pending) Add(pending);

            // Merges by rank, then by position, exactly as tokenizers' Word::merge_all.
            var queue = new PriorityQueue<(int Pos, int NewId), long>();
            for (int p = 0; p + 1 < symbols.Count; p++)
                if (Merges.TryGetValue(Key(symbols[p].Id, symbols[p + 1].Id), out var m)) queue.Enqueue((p, m.NewId), Priority(m.Rank, p));
            while (queue.TryDequeue(out var top, out _))
            {
                Symbol current = symbols[top.Pos];
                if (current.Removed || current.Next == -1) continue;
                int nextPos = current.Next;
                Symbol right = symbols[nextPos];
                if (!Merges.TryGetValue(Key(current.Id, right.Id), out var target) || target.NewId != top.NewId) continue;
                current.Id = top.NewId;
                current.Next = right.Next;
                symbols[top.Pos] = current;
                right.Removed = true;
                symbols[nextPos] = right;
                if (right.Next >= 0) { var after = symbols[right.Next]; after.Prev = top.Pos; symbols[right.Next] = after; }
                if (current.Prev >= 0 && Merges.TryGetValue(Key(symbols[current.Prev].Id, current.Id), out var before))
                    queue.Enqueue((current.Prev, before.NewId), Priority(before.Rank, current.Prev));
                if (current.Next >= 0 && Merges.TryGetValue(Key(current.Id, symbols[current.Next].Id), out var following))
                    queue.Enqueue((top.Pos, following.NewId), Priority(following.Rank, top.Pos));
            }
            foreach (var s in symbols)
                if (!s.Removed) ids.Add(s.Id);
        }

        private static long Priority(int rank, int pos) => ((long)rank << 32) | (uint)pos;
    }

    /// <summary>The normalizers of <c>tokenizer.json</c>.</summary>
    private static class Normalizers
    {
        public static Func<string, string> Read(JsonElement? element)
        {
            if (element is not { } e) return s => s;
            string type = RequiredString(e, "type");
            switch (type)
            {
                case "Sequence":
                    var parts = Required(e, "normalizers").EnumerateArray().Select(n => Read(n)).ToArray();
                    return s => parts.Aggregate(s, (acc, f) => f(acc));
                case "Prepend":
                    string prepend = RequiredString(e, "prepend");
                    return s => s.Length == 0 ? s : prepend + s;
                case "Replace":
                    Regex pattern = Pattern(e);
                    string content = RequiredString(e, "content");
                    return s => pattern.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal));
                case "NFC": return s => s.Normalize(NormalizationForm.FormC);
                case "NFD": return s => s.Normalize(NormalizationForm.FormD);
                case "NFKC": return s => s.Normalize(NormalizationForm.FormKC);
                case "NFKD": return s => s.Normalize(NormalizationForm.FormKD);
                case "Lowercase": return s => s.ToLowerInvariant();
                case "Precompiled":
                    throw new FormatException("normalizer Precompiled (a SentencePiece character map, as in T5 and other Unigram files) is not supported; use the model's tokenizer.model (data.vocabulary=path/to/tokenizer.model) instead");
                default: throw new FormatException($"normalizer type {type} is not supported");
            }
        }
    }

    /// <summary>The pre-tokenizers of <c>tokenizer.json</c>: each maps a piece (and whether it starts the text) to words.</summary>
    private static class PreTokenizers
    {
        public static Func<string, bool, IEnumerable<string>> Read(JsonElement? element)
        {
            if (element is not { } e) return (s, _) => [s];
            string type = RequiredString(e, "type");
            switch (type)
            {
                case "Sequence":
                    var parts = Required(e, "pretokenizers").EnumerateArray().Select(p => Read(p)).ToArray();
                    return (s, first) => parts.Aggregate((IEnumerable<string>)[s], (words, f) => words.SelectMany(w => f(w, first)).ToList());
                case "Metaspace":
                    return Metaspace(e);
                case "ByteLevel":
                    return ByteLevelPreTokenizer(e);
                case "WhitespaceSplit":
                    return (s, _) => Split(s, Whitespace, "Removed", invert: false);
                case "Split":
                    var pattern = new CodePointRegex(Pattern(e));
                    string behavior = Str(e, "behavior") ?? "Isolated";
                    bool invert = Bool(e, "invert", false);
                    if (behavior is not ("Removed" or "Isolated" or "MergedWithPrevious" or "MergedWithNext" or "Contiguous"))
                        throw new FormatException($"Split behavior {behavior} is not supported");
                    return (s, _) => Split(s, pattern, behavior, invert);
                default: throw new FormatException($"pre-tokenizer type {type} is not supported");
            }
        }

        /// <summary>Runs of whitespace (Unicode's White_Space, as Rust's <c>char::is_whitespace</c>).</summary>
        private static readonly CodePointRegex Whitespace = new(new Regex(@"\s+", RegexOptions.CultureInvariant));

        /// <summary>GPT-2's split, which the <c>ByteLevel</c> pre-tokenizer uses when <c>use_regex</c> is set.</summary>
        private static readonly CodePointRegex Gpt2Pattern = new(new Regex(
            @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant));

        /// <summary>tokenizers' <c>ByteLevel</c> pre-tokenizer: a leading space on each piece (<c>add_prefix_space</c>), GPT-2's
        /// split (<c>use_regex</c>), then each UTF-8 byte of each word as GPT-2's printable character for it.</summary>
        private static Func<string, bool, IEnumerable<string>> ByteLevelPreTokenizer(JsonElement e)
        {
            bool addPrefixSpace = Bool(e, "add_prefix_space", true);
            bool useRegex = Bool(e, "use_regex", true);
            return (s, _) =>
            {
                if (s.Length == 0) return [];
                if (addPrefixSpace && s[0] != ' ') s = " " + s;
                List<string> words = useRegex ? Split(s, Gpt2Pattern, "Isolated", invert: false) : [s];
                return words.ConvertAll(ByteLevel.ToChars);
            };
        }

        private static Func<string, bool, IEnumerable<string>> Metaspace(JsonElement e)
        {
            string replacement = Str(e, "replacement") ?? "▁";
            string scheme = Str(e, "prepend_scheme") ?? (Bool(e, "add_prefix_space", true) ? "always" : "never");
            if (scheme is not ("always" or "first" or "never")) throw new FormatException($"Metaspace prepend_scheme {scheme} is not supported");
            bool split = Bool(e, "split", true);
            var splitter = new CodePointRegex(new Regex(Regex.Escape(replacement), RegexOptions.CultureInvariant));
            return (s, first) =>
            {
                string r = s.Replace(" ", replacement, StringComparison.Ordinal);
                if ((scheme == "always" || (scheme == "first" && first)) && !r.StartsWith(replacement, StringComparison.Ordinal)) r = replacement + r;
                return split ? Split(r, splitter, "MergedWithNext", invert: false) : [r];
            };
        }

        /// <summary>tokenizers' <c>NormalizedString::split</c>: the pattern's matches are delimiters handled per <paramref name="behavior"/>.</summary>
        internal static List<string> Split(string s, CodePointRegex pattern, string behavior, bool invert)
        {
            var pieces = new List<(int Start, int End, bool Match)>();
            int at = 0;
            foreach (var (index, length) in pattern.Matches(s))
            {
                if (length == 0) continue;
                if (index > at) pieces.Add((at, index, invert));
                pieces.Add((index, index + length, !invert));
                at = index + length;
            }
            if (at < s.Length) pieces.Add((at, s.Length, invert));

            var spans = new List<(int Start, int End)>();
            bool previousMatch = false;
            switch (behavior)
            {
                case "Removed":
                    spans.AddRange(pieces.Where(p => !p.Match).Select(p => (p.Start, p.End)));
                    break;
                case "Isolated":
                    spans.AddRange(pieces.Select(p => (p.Start, p.End)));
                    break;
                case "Contiguous":
                    foreach (var p in pieces)
                    {
                        if (p.Match && previousMatch) spans[^1] = (spans[^1].Start, p.End);
                        else spans.Add((p.Start, p.End));
                        previousMatch = p.Match;
                    }
                    break;
                case "MergedWithPrevious":
                    foreach (var p in pieces)
                    {
                        if (p.Match && !previousMatch && spans.Count > 0) spans[^1] = (spans[^1].Start, p.End);
                        else spans.Add((p.Start, p.End));
                        previousMatch = p.Match;
                    }
                    break;
                default: // MergedWithNext
                    for (int i = pieces.Count - 1; i >= 0; i--)
                    {
                        var p = pieces[i];
                        if (p.Match && !previousMatch && spans.Count > 0) spans[^1] = (p.Start, spans[^1].End);
                        else spans.Add((p.Start, p.End));
                        previousMatch = p.Match;
                    }
                    spans.Reverse();
                    break;
            }
            return [.. spans.Where(p => p.End > p.Start).Select(p => s[p.Start..p.End])];
        }
    }

    /// <summary>The decoders of <c>tokenizer.json</c>: each maps the list of token strings to a new list.</summary>
    private static class Decoders
    {
        public static Func<List<string>, List<string>>? Read(JsonElement? element)
        {
            if (element is not { } e) return null;
            string type = RequiredString(e, "type");
            switch (type)
            {
                case "Sequence":
                    var parts = Required(e, "decoders").EnumerateArray().Select(d => Read(d)!).ToArray();
                    return tokens => parts.Aggregate(tokens, (acc, f) => f(acc));
                case "Replace":
                    Regex pattern = Pattern(e);
                    string content = RequiredString(e, "content").Replace("$", "$$", StringComparison.Ordinal);
                    return tokens => tokens.ConvertAll(t => pattern.Replace(t, content));
                case "ByteFallback":
                    return ByteFallback;
                case "ByteLevel":
                    return tokens => [ByteLevel.FromChars(tokens)];
                case "Fuse":
                    return tokens => [string.Concat(tokens)];
                case "Strip":
                    string strip = RequiredString(e, "content");
                    if (strip.Length != 1) throw new FormatException("Strip content is not one character");
                    int startCount = Required(e, "start").GetInt32(), stopCount = Required(e, "stop").GetInt32();
                    return tokens => tokens.ConvertAll(t => Strip(t, strip[0], startCount, stopCount));
                case "Metaspace":
                    string replacement = Str(e, "replacement") ?? "▁";
                    string scheme = Str(e, "prepend_scheme") ?? (Bool(e, "add_prefix_space", true) ? "always" : "never");
                    return tokens => [.. tokens.Select((t, i) =>
                    {
                        string r = t.Replace(replacement, " ", StringComparison.Ordinal);
                        return i == 0 && scheme != "never" && r.StartsWith(' ') ? r[1..] : r;
                    })];
                default: throw new FormatException($"decoder type {type} is not supported");
            }
        }

        private static string Strip(string token, char content, int start, int stop)
        {
            int from = 0, to = token.Length;
            while (from < start && from < token.Length && token[from] == content) from++;
            for (int i = 0; i < stop && to > from && token[to - 1] == content; i++) to--;
            return token[from..to];
        }

        /// <summary>Turns runs of <c>&lt;0xXX&gt;</c> tokens into their UTF-8 text, or one U+FFFD per byte when the run is not valid UTF-8.</summary>
        private static List<string> ByteFallback(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            var bytes = new List<byte>();
            var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
            void Flush()
            {
                if (bytes.Count == 0) return;
                try { result.Add(strict.GetString([.. bytes])); }
                catch (DecoderFallbackException) { result.AddRange(Enumerable.Repeat("\uFFFD", bytes.Count)); }
                bytes.Clear();
            }
            foreach (string t in tokens)
            {
                if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                    && byte.TryParse(t.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
                {
                    bytes.Add(b);
                    continue;
                }
                Flush();
                result.Add(t);
            }
            Flush();
            return result;
        }
    }
}
