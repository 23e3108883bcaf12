using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Loom.Data.Tests;

/// <summary>
/// Writes R's XDR serialization (version 3) by hand, following R's serialize.c, so the reader can be
/// tested on bytes that do not come from the reader's own assumptions about R.
/// </summary>
internal sealed class RWriter
{
    private readonly MemoryStream _out = new();
    private readonly List<string> _symbols = [];

    public static byte[] Serialize(Action<RWriter> write)
    {
        var w = new RWriter();
        w._out.Write("X\n"u8);
        w.Int(3);          // format version
        w.Int(0x00040201); // written by R 4.2.1
        w.Int(0x00030500); // readable by R 3.5.0
        w.Int(5);
        w._out.Write("UTF-8"u8);
        write(w);
        return w._out.ToArray();
    }

    public void Int(int value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(b, value);
        _out.Write(b);
    }

    /// <summary>A CHARSXP: ASCII or UTF-8 flags in the levels bits, length -1 for NA.</summary>
    public void Chars(string? s)
    {
        if (s is null) { Int(0x9); Int(-1); return; }
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        Int(bytes.Length == s.Length ? 0x40009 : 0x8009); // levels 64 = ASCII, 8 = UTF-8
        Int(bytes.Length);
        _out.Write(bytes);
    }

    public void Strings(params string?[] values)
    {
        Int(16);
        Int(values.Length);
        foreach (string? v in values) Chars(v);
    }

    public void Ints(params int[] values)
    {
        Int(13);
        Int(values.Length);
        foreach (int v in values) Int(v);
    }

    public void Logical(bool value)
    {
        Int(10);
        Int(1);
        Int(value ? 1 : 0);
    }

    /// <summary>A named list: VECSXP with an attribute pairlist holding names.</summary>
    public void NamedList(params (string Name, Action<RWriter> Write)[] items)
    {
        Int(19 | (1 << 9));
        Int(items.Length);
        foreach (var item in items) item.Write(this);
        Int(2 | (1 << 10)); // pairlist cell with a tag
        Symbol("names");
        Strings([.. items.Select(i => i.Name)]);
        Int(254); // end of the attribute pairlist
    }

    /// <summary>A symbol, written as a back-reference after its first use, as R does.</summary>
    public void Symbol(string name)
    {
        int index = _symbols.IndexOf(name);
        if (index >= 0) { Int(((index + 1) << 8) | 255); return; }
        _symbols.Add(name);
        Int(1);
        Chars(name);
    }

    /// <summary>An .rdb blob: the uncompressed length (big-endian) then a zlib stream.</summary>
    public static byte[] Blob(byte[] serialized)
    {
        using var ms = new MemoryStream();
        Span<byte> header = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(header, serialized.Length);
        ms.Write(header);
        using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true)) z.Write(serialized);
        return ms.ToArray();
    }

    /// <summary>Builds an (.rdx, .rdb) pair holding the given variables, as R's makeLazyLoadDB does.</summary>
    public static (byte[] Rdx, byte[] Rdb) Database(params (string Name, byte[] Serialized)[] variables)
    {
        var rdb = new MemoryStream();
        var spans = new List<(string, int, int)>();
        foreach (var (name, serialized) in variables)
        {
            byte[] blob = Blob(serialized);
            spans.Add((name, (int)rdb.Length, blob.Length));
            rdb.Write(blob);
        }
        byte[] index = Serialize(w => w.NamedList(
            ("variables", v => v.NamedList([.. spans.Select(s => (s.Item1, (Action<RWriter>)(x => x.Ints(s.Item2, s.Item3))))])),
            ("references", v => v.NamedList()),
            ("compressed", v => v.Logical(true))));
        using var rdx = new MemoryStream();
        using (var gz = new GZipStream(rdx, CompressionLevel.Optimal, leaveOpen: true)) gz.Write(index);
        return (rdx.ToArray(), rdb.ToArray());
    }
}
