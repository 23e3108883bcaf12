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
