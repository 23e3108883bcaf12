using System.Buffers.Binary;
using System.Text;

namespace Loom.Data;

/// <summary>
/// Reads R's binary serialization format (XDR, versions 2 and 3: what <c>saveRDS</c> and lazy-load
/// databases hold), for the data types that text corpora use.
/// </summary>
/// <remarks>
/// Values map to: character vector -> <c>string?[]</c> (NA is null); integer -> <c>int[]</c> (NA is
/// <see cref="int.MinValue"/>); logical -> <c>bool?[]</c>; double -> <c>double[]</c>; list ->
/// <see cref="RList"/>; pairlist -> <see cref="RPairList"/>; symbol -> <see cref="RSymbol"/>;
/// NULL -> null. Attributes other than a list's names are read and dropped. Environments, closures
/// and other language objects are refused with <see cref="NotSupportedException"/>.
/// </remarks>
public static class RSerialization
{
    private const int NilValue = 254, RefSxp = 255, AltRepSxp = 238;
    private const int SymSxp = 1, ListSxp = 2, CharSxp = 9, LglSxp = 10, IntSxp = 13, RealSxp = 14, StrSxp = 16, VecSxp = 19, ExprSxp = 20;
    private const int HasAttrFlag = 1 << 9, HasTagFlag = 1 << 10;
    private const int Latin1Flag = 1 << 2, BytesFlag = 1 << 1;

    /// <summary>Reads one serialized R object (starting with the <c>X\n</c> format marker).</summary>
    /// <param name="data">The uncompressed serialization.</param>
    /// <returns>The object, mapped as described on <see cref="RSerialization"/>.</returns>
    /// <exception cref="InvalidDataException">The bytes are truncated or not R's XDR serialization.</exception>
    /// <exception cref="NotSupportedException">The object holds a type this reader does not map.</exception>
    public static object? Unserialize(ReadOnlySpan<byte> data)
    {
        var reader = new Reader(data);
        if (data.Length < 2 || data[0] != (byte)'X' || data[1] != (byte)'\n')
            throw new InvalidDataException("not R XDR serialization (expected it to start with \"X\\n\"); save with saveRDS or serialize(xdr = TRUE)");
        reader.Skip(2);
        int version = reader.ReadInt();
        reader.ReadInt(); // R version that wrote it
        reader.ReadInt(); // minimal R version to read it
        if (version == 3) reader.Skip(reader.ReadLength()); // native encoding name, e.g. "UTF-8"
        else if (version != 2)
            throw new InvalidDataException($"R serialization version {version} is not supported (only 2 and 3)");
        var refs = new List<object?>();
        return ReadItem(ref reader, refs);
    }

    private static object? ReadItem(ref Reader r, List<object?> refs) => ReadItem(ref r, refs, r.ReadInt());

    private static object? ReadItem(ref Reader r, List<object?> refs, int flags)
    {
        int type = flags & 0xFF;
        bool hasAttr = (flags & HasAttrFlag) != 0;
        switch (type)
        {
            case NilValue:
                return null;
            case RefSxp:
                {
                    int index = flags >> 8;
                    if (index == 0) index = r.ReadInt();
                    if (index < 1 || index > refs.Count) throw new InvalidDataException($"R serialization refers to object {index}, which was not read");
                    return refs[index - 1];
                }
            case SymSxp:
                {
                    var name = ReadItem(ref r, refs) as string ?? throw new InvalidDataException("R symbol without a name");
                    var symbol = new RSymbol(name);
                    refs.Add(symbol);
                    return symbol;
                }
            case ListSxp:
                return ReadPairList(ref r, refs, flags);
            case CharSxp:
                return ReadChars(ref r, flags);
            case AltRepSxp:
                return ReadAltRep(ref r, refs);
            case LglSxp:
            case IntSxp:
            case RealSxp:
            case StrSxp:
            case VecSxp:
            case ExprSxp:
                {
                    object value = ReadVector(ref r, refs, type);
                    if (!hasAttr) return value;
                    var attributes = ReadItem(ref r, refs) as RPairList;
                    return value is RList list ? list with { Names = NamesOf(attributes) } : value;
                }
            default:
                throw new NotSupportedException($"R serialization type {type} is not supported here (only vectors, lists, pairlists and symbols)");
        }
    }

    private static object ReadVector(ref Reader r, List<object?> refs, int type)
    {
        int n = r.ReadLength();
        switch (type)
        {
            case IntSxp:
                {
                    r.Require(n, 4);
                    var values = new int[n];
                    for (int i = 0; i < n; i++) values[i] = r.ReadInt();
                    return values;
                }
            case LglSxp:
                {
                    r.Require(n, 4);
                    var values = new bool?[n];
                    for (int i = 0; i < n; i++)
                    {
                        int v = r.ReadInt();
                        values[i] = v == int.MinValue ? null : v != 0;
                    }
                    return values;
                }
            case RealSxp:
                {
                    r.Require(n, 8);
                    var values = new double[n];
                    for (int i = 0; i < n; i++) values[i] = r.ReadDouble();
                    return values;
                }
            case StrSxp:
                {
                    r.Require(n, 8); // each element is at least a flags word and a length
                    var values = new string?[n];
                    for (int i = 0; i < n; i++)
                    {
                        int flags = r.ReadInt();
                        if ((flags & 0xFF) != CharSxp) throw new InvalidDataException($"R character vector element {i} has type {flags & 0xFF}, not CHARSXP (9)");
                        values[i] = ReadChars(ref r, flags);
                    }
                    return values;
                }
            default: // VECSXP, EXPRSXP
                {
                    r.Require(n, 4);
                    var items = new object?[n];
                    for (int i = 0; i < n; i++) items[i] = ReadItem(ref r, refs);
                    return new RList(items, null);
                }
        }
    }

    private static string? ReadChars(ref Reader r, int flags)
    {
        int length = r.ReadInt();
        if (length == -1) return null; // NA_character_
        if (length < 0) throw new InvalidDataException($"R string has negative length {length}");
        ReadOnlySpan<byte> bytes = r.ReadBytes(length);
        // Strings marked latin1 keep their bytes as written; everything else in practice is UTF-8 or ASCII.
        return (flags & Latin1Flag) != 0 && (flags & BytesFlag) == 0 ? Encoding.Latin1.GetString(bytes) : Encoding.UTF8.GetString(bytes);
    }

    private static RPairList ReadPairList(ref Reader r, List<object?> refs, int flags)
    {
        // Iterate along the CDR chain instead of recursing, so long pairlists cannot overflow the stack.
        var cells = new List<(string?, object?)>();
        while (true)
        {
            if ((flags & HasAttrFlag) != 0) ReadItem(ref r, refs);
            string? tag = (flags & HasTagFlag) != 0 ? (ReadItem(ref r, refs) as RSymbol)?.Name : null;
            cells.Add((tag, ReadItem(ref r, refs)));
            flags = r.ReadInt();
            if ((flags & 0xFF) == NilValue) return new RPairList(cells);
            if ((flags & 0xFF) != ListSxp) throw new InvalidDataException($"R pairlist ends in type {flags & 0xFF}, not NULL");
        }
    }

    private static object? ReadAltRep(ref Reader r, List<object?> refs)
    {
        // R 3.5+ writes compact sequences such as 1:n and wrapped vectors as ALTREP: (class info, state, attributes).
        var info = ReadItem(ref r, refs) as RPairList;
        object? state = ReadItem(ref r, refs);
        ReadItem(ref r, refs);
        string? cls = info is { Cells.Count: > 0 } && info.Cells[0].Value is RSymbol s ? s.Name : null;
        switch (cls)
        {
            case "compact_intseq" when state is double[] { Length: 3 } d:
                {
                    var values = new int[checked((int)d[0])];
                    for (int i = 0; i < values.Length; i++) values[i] = checked((int)(d[1] + i * d[2]));
                    return values;
                }
            case "compact_realseq" when state is double[] { Length: 3 } d:
                {
                    var values = new double[checked((int)d[0])];
                    for (int i = 0; i < values.Length; i++) values[i] = d[1] + i * d[2];
                    return values;
                }
            case not null when cls.StartsWith("wrap_", StringComparison.Ordinal) && state is RList { Items.Count: > 0 } wrapped:
                return wrapped.Items[0];
            default:
                throw new NotSupportedException($"R ALTREP class '{cls}' is not supported here; re-save the data without ALTREP");
        }
    }

    private static string?[]? NamesOf(RPairList? attributes)
    {
        if (attributes is null) return null;
        foreach ((string? tag, object? value) in attributes.Cells)
            if (tag == "names" && value is string?[] names) return names;
        return null;
    }

    /// <summary>A big-endian cursor over the serialized bytes that fails cleanly at the end.</summary>
    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public int ReadInt() => BinaryPrimitives.ReadInt32BigEndian(ReadBytes(4));

        public double ReadDouble() => BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8));

        public int ReadLength()
        {
            int n = ReadInt();
            if (n >= 0) return n;
            if (n != -1) throw new InvalidDataException($"R vector has negative length {n}");
            // Long vectors write -1 then the length as two ints (upper, lower).
            long length = ((long)ReadInt() << 32) | (uint)ReadInt();
            if (length > Array.MaxLength) throw new NotSupportedException($"R vector of {length} elements is too long to load");
            return (int)length;
        }

        public ReadOnlySpan<byte> ReadBytes(int count)
        {
            if (count > _data.Length - _pos) throw new InvalidDataException("R serialization is truncated");
            ReadOnlySpan<byte> slice = _data.Slice(_pos, count);
            _pos += count;
            return slice;
        }

        public void Skip(int count) => ReadBytes(count);

        /// <summary>Refuses counts that cannot fit in the remaining bytes, before allocating for them.</summary>
        public readonly void Require(int count, int bytesEach)
        {
            if ((long)count * bytesEach > _data.Length - _pos) throw new InvalidDataException("R serialization is truncated");
        }
    }
}
