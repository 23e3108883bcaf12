using System.Text;
using Loom.Data;

namespace Loom.Inference.Constraints;

/// <summary>Compiles grammars into token constraints over one vocabulary (byte, SentencePiece or tiktoken), caching what depends only on the vocabulary.</summary>
/// <remarks>The vocabulary's token bytes and their trie are computed once, on first use; <see cref="Create(Grammar)"/> is thread-safe.</remarks>
public sealed class TokenConstraintFactory
{
    private readonly Lazy<TokenTrie> trie;

    /// <summary>Creates the factory of <paramref name="vocabulary"/>.</summary>
    public TokenConstraintFactory(IVocabulary vocabulary)
    {
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        trie = new Lazy<TokenTrie>(() =>
        {
            var (bytes, leadingSpace) = TokenBytes.Of(Vocabulary);
            return new TokenTrie(bytes, leadingSpace);
        }, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The vocabulary.</summary>
    public IVocabulary Vocabulary { get; }

    /// <summary>A fresh constraint, at the start of <paramref name="grammar"/>'s language.</summary>
    /// <exception cref="ArgumentException">The grammar's language is empty.</exception>
    public ITokenConstraint Create(Grammar grammar)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        return new TokenConstraint(GrammarCompiler.Compile(grammar), trie.Value, Vocabulary.EosId, null);
    }

    /// <summary>
    /// A fresh constraint that also finishes the text within <paramref name="tokenBudget"/> tokens (EOS not counted, as in
    /// <see cref="Engine.RequestOutput"/>) wherever it can: a token is allowed only if the shortest completion after it, one
    /// byte per token, still fits before the budget's last token, so a request ends with EOS rather than at its length limit.
    /// Where no token fits (a budget below the shortest text) it falls back to the grammar alone.
    /// </summary>
    /// <exception cref="ArgumentException">The grammar's language is empty.</exception>
    public ITokenConstraint Create(Grammar grammar, int tokenBudget)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokenBudget);
        return new TokenConstraint(GrammarCompiler.Compile(grammar), trie.Value, Vocabulary.EosId, tokenBudget);
    }

    /// <summary>
    /// The allowed tokens of <paramref name="constraint"/> computed the simple way, each token's bytes tried on their own
    /// (the reference that the trie walk of <see cref="ITokenConstraint.FillAllowed"/> must agree with).
    /// </summary>
    internal static void FillAllowedReference(ITokenConstraint constraint, Span<bool> allowed) => ((TokenConstraint)constraint).FillAllowedReference(allowed);

    /// <summary>The bytes of each token id (null: never allowed).</summary>
    internal IReadOnlyList<byte[]?> TokenByteStrings => trie.Value.Tokens;
}

/// <summary>What each token of a vocabulary spells, as bytes.</summary>
internal static class TokenBytes
{
    /// <summary>
    /// The bytes of each id of <paramref name="vocabulary"/>; null for ids no text comes from (EOS, PAD, control and
    /// unknown pieces, special tokens, unused ids). Byte and tiktoken vocabularies give raw bytes; SentencePiece maps
    /// ▁ to a space and <c>&lt;0xNN&gt;</c> to its byte; any other vocabulary gives the UTF-8 of each id's decoded text
    /// (null where that text is not whole, U+FFFD). Also the ids whose leading space the decoder drops at the start of
    /// the output, which a constraint leaves out there, and the ids after which the output is still at its start.
    /// </summary>
    public static (byte[]?[] Bytes, (bool[] Dropped, bool[] KeepStart)? LeadingSpace) Of(IVocabulary vocabulary)
    {
        var bytes = new byte[]?[vocabulary.Size];
        (bool[] Dropped, bool[] KeepStart)? leadingSpace = null;
        switch (vocabulary)
        {
            case ByteVocabulary:
                for (int i = 0; i < 256; i++) bytes[i] = [(byte)i];
                break;
            case TiktokenVocabulary tiktoken:
                for (int i = 0; i < bytes.Length; i++) bytes[i] = tiktoken.TokenBytes(i);
                break;
            case SentencePieceVocabulary sentencePiece:
                var pieces = sentencePiece.ReadModel().Pieces;
                var dropped = new bool[vocabulary.Size];
                var keepStart = new bool[vocabulary.Size];
                for (int i = 0; i < pieces.Count && i < bytes.Length; i++)
                {
                    bytes[i] = PieceBytes(pieces[i]);
                    // SentencePiece drops the ▁ of the first piece; Microsoft.ML.Tokenizers does so for the first
                    // non-byte piece, even after byte-fallback pieces.
                    dropped[i] = pieces[i].Type is SentencePieceType.Normal or SentencePieceType.UserDefined && pieces[i].Text.StartsWith('\u2581');
                    keepStart[i] = pieces[i].Type == SentencePieceType.Byte;
                }
                leadingSpace = (dropped, keepStart);
                break;
            case ExtraIdsVocabulary extra:
                var (inner, innerSpace) = Of(extra.Inner);
                inner.CopyTo(bytes, 0);
                if (innerSpace is var (d, k))
                    leadingSpace = ([.. d, .. new bool[extra.ExtraIdCount]], [.. k, .. new bool[extra.ExtraIdCount]]);
                break;
            default:
                leadingSpace = Decoded(vocabulary, bytes);
                break;
        }
        bytes[vocabulary.EosId] = null;
        bytes[vocabulary.PadId] = null;
        return (bytes, leadingSpace);
    }

    /// <summary>
    /// Any other vocabulary (Hugging Face's among them): each id's text as decoded after a plain token (so a decoder that
    /// strips the text's leading space does not hide the token's), null where it is not whole UTF-8 (U+FFFD); ids whose
    /// text alone differs (a stripped leading space) are left out first.
    /// </summary>
    private static (bool[] Dropped, bool[] KeepStart)? Decoded(IVocabulary vocabulary, byte[]?[] bytes)
    {
        int[] anchor = [];
        try
        {
            anchor = vocabulary.Encode("a");
        }
        catch (ArgumentException)
        {
            // No plain anchor: decode each id alone.
        }
        if (anchor.Length != 1 || vocabulary.Decode(anchor) != "a") anchor = [];
        var dropped = new bool[vocabulary.Size];
        bool anyDropped = false;
        for (int i = 0; i < bytes.Length; i++)
        {
            if (i == vocabulary.EosId || i == vocabulary.PadId) continue;
            string alone = vocabulary.Decode([i]);
            string text = alone;
            if (anchor.Length == 1)
            {
                text = vocabulary.Decode([anchor[0], i]);
                if (!text.StartsWith('a')) continue;
                text = text[1..];
            }
            if (text.Length == 0 || text.Contains('\uFFFD', StringComparison.Ordinal)) continue;
            bytes[i] = Encoding.UTF8.GetBytes(text);
            dropped[i] = alone != text;
            anyDropped |= dropped[i];
        }
        if (vocabulary is HuggingFaceVocabulary hf) AddByteLevelPieces(hf, bytes);
        return anyDropped ? (dropped, new bool[vocabulary.Size]) : null;
    }

    /// <summary>
    /// A byte-level BPE vocabulary (GPT-2's alphabet: each byte a printable character) has tokens that are parts of a UTF-8
    /// character, which decode to U+FFFD alone. If every whole token's text is its characters read as bytes, the partial
    /// ones get their bytes that way too.
    /// </summary>
    private static void AddByteLevelPieces(HuggingFaceVocabulary vocabulary, byte[]?[] bytes)
    {
        var partial = new List<(int Id, byte[] Bytes)>();
        for (int i = 0; i < bytes.Length; i++)
        {
            if (i == vocabulary.EosId || i == vocabulary.PadId || vocabulary.Token(i) is not { Length: > 0 } token || ByteLevel(token) is not { } level) continue;
            if (bytes[i] is { } whole)
            {
                if (!whole.AsSpan().SequenceEqual(level)) return; // not byte-level
            }
            else partial.Add((i, level));
        }
        foreach (var (id, level) in partial) bytes[id] = level;
    }

    private static readonly int[] ByteOfChar = ByteLevelAlphabet();

    /// <summary>GPT-2's <c>bytes_to_unicode</c>, inverted: the byte each alphabet character stands for, −1 for others.</summary>
    private static int[] ByteLevelAlphabet()
    {
        var byteOf = new int[324];
        Array.Fill(byteOf, -1);
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            byteOf[printable ? b : 256 + extra++] = b;
        }
        return byteOf;
    }

    private static byte[]? ByteLevel(string token)
    {
        var level = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int c = token[i];
            if (c >= ByteOfChar.Length || ByteOfChar[c] < 0) return null;
            level[i] = (byte)ByteOfChar[c];
        }
        return level;
    }

    private static byte[]? PieceBytes(SentencePiece piece) => piece.Type switch
    {
        SentencePieceType.Normal or SentencePieceType.UserDefined when piece.Text.Length > 0 => Encoding.UTF8.GetBytes(piece.Text.Replace('\u2581', ' ')),
        SentencePieceType.Byte when piece.Text.Length == 6 && piece.Text.StartsWith("<0x", StringComparison.Ordinal)
            => [Convert.ToByte(piece.Text[3..5], 16)],
        _ => null,
    };
}

/// <summary>A vocabulary's token byte strings as a trie (flattened into arrays), so a walk shares every common prefix.</summary>
internal sealed class TokenTrie
{
    /// <summary>Builds the trie of <paramref name="tokens"/> (id → bytes; null or empty ones are left out).</summary>
    public TokenTrie(byte[]?[] tokens, (bool[] Dropped, bool[] KeepStart)? leadingSpace = null)
    {
        Tokens = tokens;
        if (leadingSpace is var (dropped, keepStart))
        {
            StartExcluded = new ulong[(tokens.Length + 63) / 64];
            for (int i = 0; i < dropped.Length; i++)
                if (dropped[i]) StartExcluded[i >> 6] |= 1UL << i;
            KeepsStart = keepStart;
        }
        var children = new List<Dictionary<byte, int>?> { null };
        var ends = new List<List<int>?> { null };
        for (int id = 0; id < tokens.Length; id++)
        {
            if (tokens[id] is not { Length: > 0 } bytes) continue;
            int node = 0;
            foreach (byte b in bytes)
            {
                var next = children[node] ??= [];
                if (!next.TryGetValue(b, out int child))
                {
                    child = children.Count;
                    children.Add(null);
                    ends.Add(null);
                    next.Add(b, child);
                }
                node = child;
            }
            (ends[node] ??= []).Add(id);
        }
        int n = children.Count;
        ChildStart = new int[n + 1];
        EndStart = new int[n + 1];
        var childBytes = new List<byte>();
        var childNodes = new List<int>();
        var endIds = new List<int>();
        for (int i = 0; i < n; i++)
        {
            ChildStart[i] = childNodes.Count;
            if (children[i] is { } c)
                foreach (var (b, child) in c.OrderBy(p => p.Key))
                {
                    childBytes.Add(b);
                    childNodes.Add(child);
                }
            EndStart[i] = endIds.Count;
            if (ends[i] is { } e) endIds.AddRange(e);
        }
        ChildStart[n] = childNodes.Count;
        EndStart[n] = endIds.Count;
        ChildBytes = [.. childBytes];
        ChildNodes = [.. childNodes];
        EndIds = [.. endIds];
    }

    /// <summary>Each id's bytes.</summary>
    public byte[]?[] Tokens { get; }

    /// <summary>Ids never allowed at the start (their leading space would be lost in decoding), as a bit mask; null: none.</summary>
    public ulong[]? StartExcluded { get; }

    /// <summary>Ids after which the output is still at the start (byte pieces); null when <see cref="StartExcluded"/> is.</summary>
    public bool[]? KeepsStart { get; }

    /// <summary>Node i's children are <c>[ChildStart[i], ChildStart[i+1])</c> of <see cref="ChildBytes"/> and <see cref="ChildNodes"/>.</summary>
    public int[] ChildStart { get; }

    /// <summary>The byte of each child edge.</summary>
    public byte[] ChildBytes { get; }

    /// <summary>The node each child edge leads to.</summary>
    public int[] ChildNodes { get; }

    /// <summary>The ids that end at node i are <c>[EndStart[i], EndStart[i+1])</c> of <see cref="EndIds"/>.</summary>
    public int[] EndStart { get; }

    /// <summary>Token ids, grouped by the node they end at.</summary>
    public int[] EndIds { get; }
}

/// <summary>
/// A grammar's automaton over a vocabulary's trie: the allowed tokens of a state are found by walking the trie with the
/// state, cutting every prefix that leads nowhere, and are cached per state (inside a string the state repeats every token).
/// </summary>
internal sealed class TokenConstraint(ByteAutomaton automaton, TokenTrie trie, int eosId, int? tokenBudget) : ITokenConstraint
{
    private const int MaxCachedMasks = 512;

    private readonly Dictionary<int, (ulong[] Mask, int MaxRemaining)> masks = [];
    private int generated;
    private readonly Stack<(int Node, int State)> walk = new();
    private int state = automaton.Start;
    private bool atStart = trie.StartExcluded is not null;

    public bool IsComplete => automaton.IsAccepting(state);

    public bool CanContinue => automaton.CanContinue(state);

    /// <summary>The fewest bytes that finish the output from here (0 when it is whole).</summary>
    public int RemainingBytes => automaton.Remaining(state);

    /// <summary>The fewest bytes that would finish the output after <paramref name="token"/>, or null if it is not allowed.</summary>
    public int? RemainingBytesAfter(int token)
    {
        if ((uint)token >= (uint)trie.Tokens.Length || trie.Tokens[token] is not { } bytes) return null;
        int s = state;
        foreach (byte b in bytes)
        {
            s = automaton.Step(s, b);
            if (s == ByteAutomaton.Dead) return null;
        }
        return automaton.Remaining(s);
    }

    /// <summary>The number of automaton states created so far (for benchmarks).</summary>
    public int StateCount => automaton.StateCount;

    public void FillAllowed(Span<bool> allowed)
    {
        if (allowed.Length != trie.Tokens.Length)
            throw new ArgumentException($"allowed has {allowed.Length} entries; the vocabulary has {trie.Tokens.Length} ids", nameof(allowed));
        int key = atStart ? ~state : state;
        if (!masks.TryGetValue(key, out var entry))
        {
            entry = (Walk(state, int.MaxValue, out int maxRemaining), maxRemaining);
            if (atStart)
                for (int i = 0; i < entry.Mask.Length; i++) entry.Mask[i] &= ~trie.StartExcluded![i];
            if (masks.Count < MaxCachedMasks) masks.Add(key, entry);
        }
        var mask = entry.Mask;
        // After this token, (budget − generated − 1) tokens remain, and the text must be whole before the last of them.
        if (tokenBudget is int budget && budget - generated - 2 < entry.MaxRemaining)
        {
            var fitting = Walk(state, budget - generated - 2, out _);
            bool any = false;
            for (int i = 0; i < fitting.Length; i++)
            {
                fitting[i] &= mask[i];
                any |= fitting[i] != 0;
            }
            if (any || IsComplete) mask = fitting;
        }
        for (int i = 0; i < allowed.Length; i++) allowed[i] = (mask[i >> 6] & (1UL << i)) != 0;
        allowed[eosId] = IsComplete;
    }

    public void Advance(int token)
    {
        if (token == eosId)
        {
            if (!IsComplete) throw new InvalidOperationException("end of sequence is not allowed here: the output is not whole yet");
            return;
        }
        if ((uint)token >= (uint)trie.Tokens.Length || trie.Tokens[token] is not { } bytes)
            throw new InvalidOperationException($"token {token} spells no text, so the constraint never allows it");
        int s = state;
        foreach (byte b in bytes)
        {
            s = automaton.Step(s, b);
            if (s == ByteAutomaton.Dead) throw new InvalidOperationException($"token {token} is not allowed here");
        }
        if (atStart && (trie.StartExcluded![token >> 6] & (1UL << token)) != 0)
            throw new InvalidOperationException($"token {token} is not allowed first: decoding would drop its leading space");
        state = s;
        generated++;
        atStart = atStart && trie.KeepsStart![token];
    }

    /// <summary>
    /// The fast path: a depth-first walk of the trie, stepping the memoized automaton one edge at a time. Keeps the tokens
    /// after which the shortest completion is at most <paramref name="maxRemaining"/> bytes, and reports the longest such
    /// completion among those it keeps.
    /// </summary>
    private ulong[] Walk(int from, int maxRemaining, out int longestRemaining)
    {
        var mask = new ulong[(trie.Tokens.Length + 63) / 64];
        longestRemaining = 0;
        walk.Push((0, from));
        while (walk.Count > 0)
        {
            var (node, s) = walk.Pop();
            for (int c = trie.ChildStart[node]; c < trie.ChildStart[node + 1]; c++)
            {
                int next = automaton.Step(s, trie.ChildBytes[c]);
                if (next == ByteAutomaton.Dead) continue;
                int child = trie.ChildNodes[c];
                if (trie.EndStart[child] < trie.EndStart[child + 1])
                {
                    int remaining = automaton.Remaining(next);
                    if (remaining <= maxRemaining)
                    {
                        longestRemaining = Math.Max(longestRemaining, remaining);
                        for (int e = trie.EndStart[child]; e < trie.EndStart[child + 1]; e++)
                        {
                            int id = trie.EndIds[e];
                            mask[id >> 6] |= 1UL << id;
                        }
                    }
                }
                if (trie.ChildStart[child] < trie.ChildStart[child + 1]) walk.Push((child, next));
            }
        }
        return mask;
    }

    /// <summary>The reference path: each token's bytes run through fresh thread sets, no trie, no memo.</summary>
    public void FillAllowedReference(Span<bool> allowed)
    {
        var start = automaton.Threads(state);
        for (int id = 0; id < allowed.Length; id++)
        {
            allowed[id] = false;
            if (trie.Tokens[id] is not { Length: > 0 } bytes) continue;
            IReadOnlyList<Cursor> threads = start;
            foreach (byte b in bytes)
            {
                threads = automaton.Advance(threads, b);
                if (threads.Count == 0) break;
            }
            allowed[id] = threads.Count > 0 && !(atStart && (trie.StartExcluded![id >> 6] & (1UL << id)) != 0);
        }
        allowed[eosId] = automaton.AnyAccepting(start);
    }
}
