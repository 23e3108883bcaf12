using Loom.Data;

namespace Loom.Inference;

/// <summary>
/// Turns a growing list of token ids into text deltas for streaming. Text whose last character is
/// an incomplete UTF-8 sequence (U+FFFD at the end) is held back until the next token completes it.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly IVocabulary vocabulary;
    private readonly List<int> ids = new();
    private int emitted;

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
        emitted = vocabulary.Decode(ids.ToArray()).Length;
    }

    /// <summary>Adds a token; returns the new text that is now final (possibly empty).</summary>
    public string Push(int id)
    {
        ids.Add(id);
        string text = vocabulary.Decode(ids.ToArray());
        int stable = text.Length;
        while (stable > emitted && text[stable - 1] == '\uFFFD') stable--; // may still be completed
        if (stable <= emitted) return "";
        string delta = text[emitted..stable];
        emitted = stable;
        return delta;
    }

    /// <summary>Returns whatever remains, replacement characters included.</summary>
    public string Flush()
    {
        string text = vocabulary.Decode(ids.ToArray());
        string rest = text.Length > emitted ? text[emitted..] : "";
        emitted = text.Length;
        return rest;
    }
}
