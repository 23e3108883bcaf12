namespace Loom.Data;

/// <summary>
/// Reads the special ids from a SentencePiece <c>.model</c> file (a <c>ModelProto</c> protobuf).
/// Microsoft.ML.Tokenizers keeps its parsed <c>TrainerSpec</c> internal and exposes no pad id, so the
/// few fields needed are read here directly.
/// </summary>
internal static class SentencePieceModelSpec
{
    // Field numbers from sentencepiece_model.proto: ModelProto.trainer_spec = 2;
    // TrainerSpec.eos_id = 42 [default = 2], TrainerSpec.pad_id = 43 [default = -1].
    private const int TrainerSpecField = 2;
    private const int EosIdField = 42;
    private const int PadIdField = 43;

    /// <summary>Returns the trainer's EOS and PAD ids (-1 where the model has none).</summary>
    /// <exception cref="InvalidDataException">The bytes are not a well-formed protobuf message.</exception>
    internal static (int EosId, int PadId) ReadSpecialIds(ReadOnlySpan<byte> model)
    {
        int eos = 2, pad = -1;
        int pos = 0;
        while (pos < model.Length)
        {
            (int field, int wire) = ReadTag(model, ref pos);
            if (field == TrainerSpecField && wire == 2)
            {
                ReadOnlySpan<byte> spec = ReadLengthDelimited(model, ref pos);
                int p = 0;
                while (p < spec.Length)
                {
                    (int f, int w) = ReadTag(spec, ref p);
                    if (w == 0 && f is EosIdField or PadIdField)
                    {
                        // int32 fields are varints; negative values are sign-extended to 64 bits.
                        int value = unchecked((int)ReadVarint(spec, ref p));
                        if (f == EosIdField) eos = value; else pad = value;
                    }
                    else Skip(spec, ref p, w);
                }
            }
            else Skip(model, ref pos, wire);
        }
        return (eos, pad);
    }

    /// <summary>
    /// The pieces (ModelProto.pieces = 1: piece = 1, score = 2, type = 3) and the fields a GGUF tokenizer needs:
    /// TrainerSpec.model_type = 3, unk_id = 40, bos_id = 41; NormalizerSpec (ModelProto.normalizer_spec = 3).add_dummy_prefix = 3.
    /// </summary>
    internal static SentencePieceModel ReadModel(ReadOnlySpan<byte> model)
    {
        var pieces = new List<SentencePiece>();
        int modelType = 1, unk = 0, bos = 1;
        bool addDummyPrefix = true;
        int pos = 0;
        while (pos < model.Length)
        {
            (int field, int wire) = ReadTag(model, ref pos);
            if (field == 1 && wire == 2)
            {
                ReadOnlySpan<byte> entry = ReadLengthDelimited(model, ref pos);
                string text = "";
                float score = 0;
                int type = 1; // NORMAL
                int p = 0;
                while (p < entry.Length)
                {
                    (int f, int w) = ReadTag(entry, ref p);
                    if (f == 1 && w == 2) text = System.Text.Encoding.UTF8.GetString(ReadLengthDelimited(entry, ref p));
                    else if (f == 2 && w == 5)
                    {
                        if (entry.Length - p < 4) throw Malformed();
                        score = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(entry[p..]);
                        p += 4;
                    }
                    else if (f == 3 && w == 0) type = (int)ReadVarint(entry, ref p);
                    else Skip(entry, ref p, w);
                }
                pieces.Add(new SentencePiece(text, score, (SentencePieceType)type));
            }
            else if (field == TrainerSpecField && wire == 2)
            {
                ReadOnlySpan<byte> spec = ReadLengthDelimited(model, ref pos);
                int p = 0;
                while (p < spec.Length)
                {
                    (int f, int w) = ReadTag(spec, ref p);
                    if (w == 0 && f is 3 or 40 or 41)
                    {
                        int value = unchecked((int)ReadVarint(spec, ref p));
                        if (f == 3) modelType = value; else if (f == 40) unk = value; else bos = value;
                    }
                    else Skip(spec, ref p, w);
                }
            }
            else if (field == 3 && wire == 2)
            {
                ReadOnlySpan<byte> spec = ReadLengthDelimited(model, ref pos);
                int p = 0;
                while (p < spec.Length)
                {
                    (int f, int w) = ReadTag(spec, ref p);
                    if (f == 3 && w == 0) addDummyPrefix = ReadVarint(spec, ref p) != 0;
                    else Skip(spec, ref p, w);
                }
            }
            else Skip(model, ref pos, wire);
        }
        return new SentencePieceModel(pieces, modelType == 2, addDummyPrefix, unk, bos);
    }

    private static (int Field, int Wire) ReadTag(ReadOnlySpan<byte> data, ref int pos)
    {
        ulong tag = ReadVarint(data, ref pos);
        return ((int)(tag >> 3), (int)(tag & 7));
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> data, ref int pos)
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= data.Length) throw Malformed();
            byte b = data[pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return result;
        }
        throw Malformed();
    }

    private static ReadOnlySpan<byte> ReadLengthDelimited(ReadOnlySpan<byte> data, ref int pos)
    {
        ulong length = ReadVarint(data, ref pos);
        if (length > (ulong)(data.Length - pos)) throw Malformed();
        ReadOnlySpan<byte> slice = data.Slice(pos, (int)length);
        pos += (int)length;
        return slice;
    }

    private static void Skip(ReadOnlySpan<byte> data, ref int pos, int wire)
    {
        switch (wire)
        {
            case 0: ReadVarint(data, ref pos); break;
            case 1: Advance(data, ref pos, 8); break;
            case 2: ReadLengthDelimited(data, ref pos); break;
            case 5: Advance(data, ref pos, 4); break;
            default: throw Malformed();
        }
    }

    private static void Advance(ReadOnlySpan<byte> data, ref int pos, int count)
    {
        if (data.Length - pos < count) throw Malformed();
        pos += count;
    }

    private static InvalidDataException Malformed() => new("malformed protobuf in SentencePiece model");
}

/// <summary>The kind of a SentencePiece piece (<c>SentencePiece.Type</c>; llama.cpp's token types use the same numbers).</summary>
public enum SentencePieceType
{
    /// <summary>An ordinary piece.</summary>
    Normal = 1,

    /// <summary>The unknown piece.</summary>
    Unknown = 2,

    /// <summary>A control symbol (BOS, EOS, PAD).</summary>
    Control = 3,

    /// <summary>A user-defined symbol, matched whole.</summary>
    UserDefined = 4,

    /// <summary>A piece the model never produces.</summary>
    Unused = 5,

    /// <summary>A byte-fallback piece <c>&lt;0xNN&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>One piece of a SentencePiece model: its text, score and kind.</summary>
/// <param name="Text">The piece, with ▁ (U+2581) for a space.</param>
/// <param name="Score">Its log probability (unigram) or negated merge rank (BPE).</param>
/// <param name="Type">Its kind.</param>
public sealed record SentencePiece(string Text, float Score, SentencePieceType Type);

/// <summary>What a SentencePiece model file says about its pieces.</summary>
/// <param name="Pieces">Every piece, by id.</param>
/// <param name="IsBpe">BPE (true) or unigram (false).</param>
/// <param name="AddDummyPrefix">Whether a space (▁) is put before the text.</param>
/// <param name="UnknownId">The unknown piece's id (-1: none).</param>
/// <param name="BosId">The beginning-of-sentence id (-1: none).</param>
public sealed record SentencePieceModel(IReadOnlyList<SentencePiece> Pieces, bool IsBpe, bool AddDummyPrefix, int UnknownId, int BosId);
