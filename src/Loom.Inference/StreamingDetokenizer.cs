using Loom.Data;

namespace Loom.Inference;

/// <summary>
/// Turns a growing list of token ids into text deltas for streaming. Text whose last character is
/// an incomplete UTF-8 sequence (U+FFFD at the end) is held back until the next token completes it.
/// </summary>
/// <remarks>
/// Each <see cref="Push"/> decodes a short window, not the whole text (vLLM's incremental detokenization):
/// at least <see cref="Context"/> tokens before the new one, so that a piece's leading space or a multi-byte
/// character is decoded with its neighbours, and at most <see cref="SlideAt"/> unless its text ends in an
/// incomplete character (then it grows until that completes). So a push costs O(1) in the length generated so far,
/// where decoding everything again would make a stream O(n²). The emitted text is the same as that of
/// decoding all ids at once and emitting what is past the previous text, as long as decoding a suffix
/// of ids gives a suffix of the text (true of bytes, byte-level BPE and SentencePiece pieces).
/// </remarks>
public sealed class StreamingDetokenizer
{
    /// <summary>Tokens decoded before the new ones, for the pieces whose text depends on what precedes them.</summary>
    private const int Context = 4;

    /// <summary>
    /// The window slides (one extra decode) once it holds this many tokens, not on every push: a push then decodes
    /// once, a bounded window, and sliding costs one more decode every ~60 pushes.
    /// </summary>
    private const int SlideAt = 64;

    private readonly IVocabulary vocabulary;
    private readonly List<int> ids = new();
    private int windowStart; // the first id the window decodes
    private int emitted;     // characters of the window's text already emitted (or the prompt's)

    /// <summary>Creates a detokenizer over <paramref name="vocabulary"/>.</summary>
    public StreamingDetokenizer(IVocabulary vocabulary) : this(vocabulary, Array.Empty<int>()) { }

    /// <summary>
    /// Creates a detokenizer whose text continues <paramref name="prompt"/>: tokens are decoded together
    /// with the prompt's and only the text past the prompt is emitted, so that word-boundary pieces
    /// (SentencePiece's "▁up") keep their space after the prompt.
    /// </summary>
    public StreamingDetokenizer(IVocabulary vocabulary, IReadOnlyList<int> prompt)
    {
        this.vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        ArgumentNullException.ThrowIfNull(prompt);
        ids.AddRange(prompt);
        // The prompt's whole text counts as emitted (an incomplete character at its end included), as if decoded whole.
        windowStart = Math.Max(0, ids.Count - Context);
        emitted = Window().Length;
    }

    /// <summary>Adds a token; returns the new text that is now final (possibly empty).</summary>
    public string Push(int id)
    {
        ids.Add(id);
        string text = Window();
        int stable = text.Length;
        while (stable > emitted && text[stable - 1] == '\uFFFD') stable--; // may still be completed
        string delta = stable > emitted ? text[emitted..stable] : "";
        emitted = Math.Max(emitted, stable);
        if (stable == text.Length && ids.Count - windowStart >= SlideAt)
        {
            // Everything decoded is final: slide the window to the last few tokens, whose text is all emitted.
            windowStart = ids.Count - Context;
            emitted = Window().Length;
        }
        return delta;
    }

    /// <summary>Returns whatever remains, replacement characters included.</summary>
    public string Flush()
    {
        string text = Window();
        string rest = text.Length > emitted ? text[emitted..] : "";
        emitted = text.Length;
        return rest;
    }

    private string Window() => vocabulary.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids)[windowStart..]);
}
