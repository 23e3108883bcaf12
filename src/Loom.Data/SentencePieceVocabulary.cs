using Microsoft.ML.Tokenizers;

namespace Loom.Data;

/// <summary>
/// A SentencePiece vocabulary (BPE or unigram <c>.model</c> file, as written by <c>spm_train</c>,
/// T5's <c>spiece.model</c> or Llama's <c>tokenizer.model</c>), encoded with Microsoft.ML.Tokenizers,
/// which reproduces <c>spm_encode</c> ids.
/// </summary>
/// <remarks>
/// EOS and PAD come from the model's trainer spec. A model trained without one of them (Llama and
/// <c>spm_train</c>'s default have no PAD) gets an extra id after the last piece, so
/// <see cref="Size"/> can exceed <see cref="PieceCount"/>; the extra ids are never produced by
/// <see cref="Encode"/>.
/// </remarks>
public sealed class SentencePieceVocabulary : IVocabulary
{
    private readonly SentencePieceTokenizer _tokenizer;

    /// <summary>Loads a SentencePiece model file.</summary>
    /// <param name="modelPath">The path of the <c>.model</c> file.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece BPE or unigram model.</exception>
    public SentencePieceVocabulary(string modelPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
        string full = Path.GetFullPath(modelPath);
        if (!File.Exists(full))
            throw new FileNotFoundException(
                $"SentencePiece model '{full}' does not exist; pass the path of an existing .model file (e.g. one written by spm_train)", full);

        byte[] bytes = File.ReadAllBytes(full);
        try
        {
            (int eos, int pad) = SentencePieceModelSpec.ReadSpecialIds(bytes);
            using var stream = new MemoryStream(bytes, writable: false);
            _tokenizer = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
            PieceCount = _tokenizer.Vocabulary.Count;
            int next = PieceCount;
            EosId = eos >= 0 && eos < PieceCount ? eos : next++;
            PadId = pad >= 0 && pad < PieceCount ? pad : next++;
            Size = next;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or NotSupportedException or InvalidOperationException)
        {
            throw new InvalidDataException(
                $"'{full}' is not a usable SentencePiece BPE or unigram model ({e.Message}); pass a .model file written by spm_train", e);
        }
        Name = "sentencepiece:" + Path.GetFileName(full);
        ModelPath = full;
    }

    /// <summary>The model file's pieces, scores and settings, as llama.cpp's GGUF tokenizer needs them.</summary>
    /// <exception cref="InvalidDataException">The file is not a readable SentencePiece model.</exception>
    public SentencePieceModel ReadModel() => SentencePieceModelSpec.ReadModel(File.ReadAllBytes(ModelPath));

    /// <summary>The full path of the loaded model file.</summary>
    public string ModelPath { get; }

    /// <summary>The number of pieces in the model; ids at or above it are the extra EOS/PAD ids, if any.</summary>
    public int PieceCount { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public int EosId { get; }

    /// <inheritdoc />
    public int PadId { get; }

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. _tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: true, considerNormalization: true)];
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids)
    {
        var pieces = new List<int>(ids.Length);
        foreach (int id in ids)
        {
            if (id == EosId || id == PadId) continue;
            if ((uint)id >= (uint)PieceCount)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is outside vocabulary {Name} (0..{Size - 1})");
            pieces.Add(id);
        }
        // Without special tokens, BOS and UNK decode to nothing, as in a sampled continuation.
        return _tokenizer.Decode(pieces, considerSpecialTokens: false);
    }
}
