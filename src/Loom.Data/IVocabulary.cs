namespace Loom.Data;

/// <summary>
/// Maps text to token ids and back. A model's embedding table has <see cref="Size"/> rows; every id
/// that <see cref="Encode"/> returns, and <see cref="EosId"/> and <see cref="PadId"/>, lie in
/// <c>[0, Size)</c>.
/// </summary>
public interface IVocabulary
{
    /// <summary>A short name for logs and run configs, such as <c>byte</c> or <c>sentencepiece:spiece.model</c>.</summary>
    string Name { get; }

    /// <summary>The number of ids, including the special ones: the size of the model's embedding table.</summary>
    int Size { get; }

    /// <summary>The end-of-sequence id, which token streams append after every document.</summary>
    int EosId { get; }

    /// <summary>The padding id, which fills unused positions of a batch and carries no loss.</summary>
    int PadId { get; }

    /// <summary>Encodes text without adding EOS, BOS or padding.</summary>
    /// <param name="text">The text to encode.</param>
    /// <returns>The token ids, each in <c>[0, Size)</c>.</returns>
    int[] Encode(string text);

    /// <summary>Decodes ids to text, skipping <see cref="EosId"/> and <see cref="PadId"/>.</summary>
    /// <param name="ids">Ids in <c>[0, Size)</c>.</param>
    /// <returns>The decoded text.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id lies outside <c>[0, Size)</c>.</exception>
    string Decode(ReadOnlySpan<int> ids);
}
