namespace Loom.Data;

/// <summary>
/// A corpus as one sequence of token ids: every document encoded and followed by EOS, back to back
/// (PaLM-style packing: no padding, documents attend across EOS). Held as an <c>int[]</c> on the
/// host, so a stream holds at most <see cref="Array.MaxLength"/> tokens.
/// </summary>
public sealed class TokenStream
{
    private readonly int[] _tokens;

    /// <summary>Wraps a copy of the given ids (for tests and pre-tokenized data).</summary>
    /// <param name="tokens">Non-negative token ids.</param>
    /// <exception cref="ArgumentException">An id is negative.</exception>
    public TokenStream(ReadOnlySpan<int> tokens)
    {
        for (int i = 0; i < tokens.Length; i++)
            if (tokens[i] < 0) throw new ArgumentException($"token {i} is negative ({tokens[i]}); ids must be non-negative", nameof(tokens));
        _tokens = tokens.ToArray();
    }

    private TokenStream(int[] tokens, int documentCount)
    {
        _tokens = tokens;
        DocumentCount = documentCount;
    }

    /// <summary>Encodes documents with a vocabulary, appending <see cref="IVocabulary.EosId"/> after each.</summary>
    /// <param name="documents">The documents, in order.</param>
    /// <param name="vocabulary">The vocabulary to encode with.</param>
    /// <returns>The concatenated stream.</returns>
    /// <exception cref="ArgumentException">The corpus encodes to more tokens than one array can hold.</exception>
    public static TokenStream Encode(IEnumerable<string> documents, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentNullException.ThrowIfNull(vocabulary);
        var tokens = new List<int>();
        int count = 0;
        foreach (string doc in documents)
        {
            int[] ids = vocabulary.Encode(doc);
            if ((long)tokens.Count + ids.Length + 1 > Array.MaxLength)
                throw new ArgumentException($"the corpus encodes to more than {Array.MaxLength:N0} tokens; pass less text or split it into several runs", nameof(documents));
            tokens.AddRange(ids);
            tokens.Add(vocabulary.EosId);
            count++;
        }
        return new TokenStream([.. tokens], count);
    }

    /// <summary>The token ids.</summary>
    public ReadOnlyMemory<int> Tokens => _tokens;

    /// <summary>The number of tokens.</summary>
    public int Length => _tokens.Length;

    /// <summary>The number of documents encoded, or 0 for a stream built from raw ids.</summary>
    public int DocumentCount { get; }
}
