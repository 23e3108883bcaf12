using System.Text;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>The element types a GGUF tensor is stored in that Loom writes and reads (ggml's <c>ggml_type</c> numbers).</summary>
public enum GgmlType : uint
{
    /// <summary>32-bit IEEE floats.</summary>
    F32 = 0,

    /// <summary>16-bit IEEE floats.</summary>
    F16 = 1,

    /// <summary>
    /// ggml's 8-bit blocks: each run of 32 values along the innermost dimension is one f16 scale d = max|x| / 127 and
    /// 32 signed bytes round(x / d), 34 bytes in all.
    /// </summary>
    Q8_0 = 8,
}

/// <summary>The types of GGUF metadata values (<c>gguf_type</c>).</summary>
public enum GgufValueType : uint
{
    /// <summary>An unsigned byte (<see cref="byte"/>).</summary>
    UInt8 = 0,

    /// <summary>A signed byte (<see cref="sbyte"/>).</summary>
    Int8 = 1,

    /// <summary>An unsigned 16-bit integer (<see cref="ushort"/>).</summary>
    UInt16 = 2,

    /// <summary>A signed 16-bit integer (<see cref="short"/>).</summary>
    Int16 = 3,

    /// <summary>An unsigned 32-bit integer (<see cref="uint"/>).</summary>
    UInt32 = 4,

    /// <summary>A signed 32-bit integer (<see cref="int"/>).</summary>
    Int32 = 5,

    /// <summary>A 32-bit float (<see cref="float"/>).</summary>
    Float32 = 6,

    /// <summary>A boolean stored as one byte (<see cref="bool"/>).</summary>
    Bool = 7,

    /// <summary>A UTF-8 string with a 64-bit length (<see cref="string"/>).</summary>
    String = 8,

    /// <summary>An array of values of one type (a CLR array of that type; nested arrays read as <c>object[]</c>).</summary>
    Array = 9,

    /// <summary>An unsigned 64-bit integer (<see cref="ulong"/>).</summary>
    UInt64 = 10,

    /// <summary>A signed 64-bit integer (<see cref="long"/>).</summary>
    Int64 = 11,

    /// <summary>A 64-bit float (<see cref="double"/>).</summary>
    Float64 = 12,
}

/// <summary>
/// A GGUF file (version 3, little-endian), the format llama.cpp and ggml load: the magic <c>GGUF</c>, the version, the
/// tensor and metadata counts, typed metadata key/values, tensor infos (name, dimensions in ggml's order, innermost
/// first, element type, offset into the data), then the tensors' data, each aligned to <c>general.alignment</c>
/// (32 unless the metadata says otherwise). Metadata values are CLR values of the matching type
/// (<see cref="GgufValueType"/>): <see cref="uint"/>, <see cref="float"/>, <see cref="string"/>, <c>string[]</c>,
/// <c>int[]</c>, and so on.
/// </summary>
public sealed class GgufFile
{
    /// <summary>The magic number, "GGUF" read as a little-endian 32-bit integer.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>The version Loom writes.</summary>
    public const uint Version = 3;

    /// <summary>The metadata key of the data alignment.</summary>
    public const string AlignmentKey = "general.alignment";

    /// <summary>The alignment Loom writes and the one a file without <see cref="AlignmentKey"/> has.</summary>
    public const uint DefaultAlignment = 32;

    private const int MaxDimensions = 4; // GGML_MAX_DIMS

    private GgufFile(IReadOnlyDictionary<string, object> metadata, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, GgmlType> types)
    {
        Metadata = metadata;
        Tensors = tensors;
        Types = types;
    }

    /// <summary>The metadata, in file order.</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }

    /// <summary>The tensors on the CPU, in file order, shaped as PyTorch would (outermost dimension first); the caller owns them.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>The element type each tensor was stored in.</summary>
    public IReadOnlyDictionary<string, GgmlType> Types { get; }

    /// <summary>
    /// Writes a GGUF v3 file: <paramref name="metadata"/> (with <c>general.alignment = 32</c> added unless present) and
    /// <paramref name="tensors"/>, each converted to the type <paramref name="typeOf"/> picks for it (F32 when null).
    /// </summary>
    /// <exception cref="NotSupportedException">A metadata value has a type GGUF cannot store.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, object>> metadata, IEnumerable<KeyValuePair<string, Tensor>> tensors, Func<string, Tensor, GgmlType>? typeOf = null)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(tensors);
        using var scope = NewDisposeScope();
        var meta = metadata.ToList();
        uint alignment = DefaultAlignment;
        if (meta.FirstOrDefault(m => m.Key == AlignmentKey) is { Key: not null } given) alignment = Convert.ToUInt32(given.Value, System.Globalization.CultureInfo.InvariantCulture);
        else meta.Insert(0, new(AlignmentKey, DefaultAlignment));
        if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentException($"{AlignmentKey} = {alignment} is not a power of two");

        var blobs = new List<(string Name, long[] Shape, GgmlType Type, byte[] Bytes)>();
        foreach (var (name, tensor) in tensors)
        {
            var type = typeOf?.Invoke(name, tensor) ?? GgmlType.F32;
            var cpu = tensor.detach().cpu().to(type == GgmlType.F16 ? float16 : float32).contiguous();
            if (cpu.dim() is 0 or > MaxDimensions) throw new ArgumentException($"tensor '{name}' has {cpu.dim()} dimensions; GGUF stores 1 to {MaxDimensions}");
            blobs.Add((name, cpu.shape, type, type == GgmlType.Q8_0 ? Q8Blocks.Quantize(cpu, name) : cpu.bytes.ToArray()));
        }

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)blobs.Count);
        w.Write((ulong)meta.Count);
        foreach (var (key, value) in meta)
        {
            WriteString(w, key);
            var type = TypeOf(value, key);
            w.Write((uint)type);
            WriteValue(w, type, value, key);
        }
        long offset = 0;
        foreach (var (name, shape, type, bytes) in blobs)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (long dim in shape.Reverse()) w.Write((ulong)dim); // ggml's ne[0] is the innermost dimension
            w.Write((uint)type);
            w.Write((ulong)offset);
            offset = Align(offset + bytes.Length, alignment);
        }
        w.Flush();
        Pad(stream, alignment);
        foreach (var (_, _, _, bytes) in blobs)
        {
            stream.Write(bytes);
            Pad(stream, alignment);
        }
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Reads a GGUF file (version 2 or 3): its metadata and every tensor, onto the CPU.</summary>
    /// <exception cref="InvalidDataException">The file is not GGUF, is truncated or corrupt, or holds a tensor type Loom does not read; the message names the file.</exception>
    public static GgufFile Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long length = stream.Length;
        using var r = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        try
        {
            if (length < 24 || r.ReadUInt32() != Magic) throw new InvalidDataException($"{path}: not a GGUF file (no GGUF magic)");
            uint version = r.ReadUInt32();
            if (version is not (2 or 3)) throw new InvalidDataException($"{path}: GGUF version {version} is not supported (Loom reads versions 2 and 3)");
            ulong tensorCount = r.ReadUInt64(), kvCount = r.ReadUInt64();
            if (tensorCount > (ulong)length || kvCount > (ulong)length) throw new InvalidDataException($"{path}: corrupt GGUF header ({tensorCount} tensors, {kvCount} metadata entries in {length} bytes)");
            var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
            for (ulong i = 0; i < kvCount; i++)
            {
                string key = ReadString(r, length, path);
                var type = (GgufValueType)r.ReadUInt32();
                metadata[key] = ReadValue(r, type, length, path, key);
            }
            uint alignment = metadata.TryGetValue(AlignmentKey, out var a) && a is uint u ? u : DefaultAlignment;
            if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw new InvalidDataException($"{path}: {AlignmentKey} = {alignment} is not a power of two");
            var infos = new List<(string Name, long[] Shape, GgmlType Type, long Offset)>();
            for (ulong i = 0; i < tensorCount; i++)
            {
                string name = ReadString(r, length, path);
                uint dims = r.ReadUInt32();
                if (dims is 0 or > MaxDimensions) throw new InvalidDataException($"{path}: tensor '{name}' has {dims} dimensions (GGUF allows 1 to {MaxDimensions})");
                var shape = new long[dims];
                for (int d = 0; d < dims; d++) shape[dims - 1 - d] = checked((long)r.ReadUInt64());
                uint type = r.ReadUInt32();
                if (type is not ((uint)GgmlType.F32 or (uint)GgmlType.F16 or (uint)GgmlType.Q8_0))
                    throw new InvalidDataException($"{path}: tensor '{name}' has ggml type {type}; Loom reads F32 (0), F16 (1) and Q8_0 (8), not other quantized types");
                if (type == (uint)GgmlType.Q8_0 && shape[^1] % Q8Blocks.BlockSize != 0)
                    throw new InvalidDataException($"{path}: Q8_0 tensor '{name}' has {shape[^1]} values per row, not a multiple of {Q8Blocks.BlockSize}");
                infos.Add((name, shape, (GgmlType)type, checked((long)r.ReadUInt64())));
            }
            long dataStart = Align(stream.Position, alignment);
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            var types = new Dictionary<string, GgmlType>(StringComparer.Ordinal);
            foreach (var (name, shape, type, offset) in infos)
            {
                long count = shape.Aggregate(1L, (x, y) => checked(x * y));
                long bytes = checked(type switch { GgmlType.F16 => count * 2, GgmlType.Q8_0 => count / Q8Blocks.BlockSize * Q8Blocks.BlockBytes, _ => count * 4 });
                if (offset < 0 || offset % alignment != 0 || dataStart + offset + bytes > length)
                    throw new InvalidDataException($"{path}: tensor '{name}' data ({bytes} bytes at offset {offset}) lies outside the file's {length} bytes (truncated or corrupt)");
                stream.Position = dataStart + offset;
                if (type == GgmlType.Q8_0)
                {
                    var blocks = new byte[bytes];
                    stream.ReadExactly(blocks);
                    tensors[name] = Q8Blocks.Dequantize(blocks, shape); // read as the float32 values the blocks stand for
                }
                else
                {
                    var tensor = empty(shape, type == GgmlType.F16 ? float16 : float32);
                    stream.ReadExactly(tensor.bytes);
                    tensors[name] = tensor;
                }
                types[name] = type;
            }
            return new GgufFile(metadata, tensors, types);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: the GGUF file ends early (truncated)", e);
        }
        catch (OverflowException e)
        {
            throw new InvalidDataException($"{path}: corrupt GGUF tensor info (a size overflows)", e);
        }
    }

    private static long Align(long offset, uint alignment) => (offset + alignment - 1) / alignment * alignment;

    private static void Pad(Stream stream, uint alignment)
    {
        long padded = Align(stream.Position, alignment);
        while (stream.Position < padded) stream.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static string ReadString(BinaryReader r, long length, string path)
    {
        ulong n = r.ReadUInt64();
        if (n > (ulong)(length - r.BaseStream.Position)) throw new EndOfStreamException();
        byte[] bytes = r.ReadBytes((int)n);
        if (bytes.Length != (int)n) throw new EndOfStreamException();
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path}: a GGUF string is not valid UTF-8", e);
        }
    }

    private static GgufValueType TypeOf(object value, string key) => TypeOf(value.GetType(), key);

    private static GgufValueType TypeOf(Type type, string key) =>
        type == typeof(byte) ? GgufValueType.UInt8
        : type == typeof(sbyte) ? GgufValueType.Int8
        : type == typeof(ushort) ? GgufValueType.UInt16
        : type == typeof(short) ? GgufValueType.Int16
        : type == typeof(uint) ? GgufValueType.UInt32
        : type == typeof(int) ? GgufValueType.Int32
        : type == typeof(float) ? GgufValueType.Float32
        : type == typeof(bool) ? GgufValueType.Bool
        : type == typeof(string) ? GgufValueType.String
        : type.IsArray ? GgufValueType.Array
        : type == typeof(ulong) ? GgufValueType.UInt64
        : type == typeof(long) ? GgufValueType.Int64
        : type == typeof(double) ? GgufValueType.Float64
        : throw new NotSupportedException($"GGUF metadata '{key}': a {type.Name} has no GGUF type");

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value, string key)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Array:
                var array = (Array)value;
                var elementType = array.GetType().GetElementType() is { } e && e != typeof(object) ? TypeOf(e, key)
                    : array.Length > 0 ? TypeOf(array.GetValue(0)!, key) : GgufValueType.Array;
                w.Write((uint)elementType);
                w.Write((ulong)array.Length);
                foreach (var item in array)
                {
                    if (TypeOf(item, key) != elementType) throw new NotSupportedException($"GGUF metadata '{key}': an array's elements must share one type");
                    WriteValue(w, elementType, item, key);
                }
                break;
            default: throw new NotSupportedException($"GGUF metadata '{key}': type {type}");
        }
    }

    private static object ReadValue(BinaryReader r, GgufValueType type, long length, string path, string key)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return r.ReadByte();
            case GgufValueType.Int8: return r.ReadSByte();
            case GgufValueType.UInt16: return r.ReadUInt16();
            case GgufValueType.Int16: return r.ReadInt16();
            case GgufValueType.UInt32: return r.ReadUInt32();
            case GgufValueType.Int32: return r.ReadInt32();
            case GgufValueType.Float32: return r.ReadSingle();
            case GgufValueType.Bool: return r.ReadByte() != 0;
            case GgufValueType.String: return ReadString(r, length, path);
            case GgufValueType.UInt64: return r.ReadUInt64();
            case GgufValueType.Int64: return r.ReadInt64();
            case GgufValueType.Float64: return r.ReadDouble();
            case GgufValueType.Array:
                var elementType = (GgufValueType)r.ReadUInt32();
                ulong count = r.ReadUInt64();
                if (count > (ulong)(length - r.BaseStream.Position)) throw new EndOfStreamException(); // every element takes at least a byte
                Array array = elementType switch
                {
                    GgufValueType.UInt8 => new byte[count],
                    GgufValueType.Int8 => new sbyte[count],
                    GgufValueType.UInt16 => new ushort[count],
                    GgufValueType.Int16 => new short[count],
                    GgufValueType.UInt32 => new uint[count],
                    GgufValueType.Int32 => new int[count],
                    GgufValueType.Float32 => new float[count],
                    GgufValueType.Bool => new bool[count],
                    GgufValueType.String => new string[count],
                    GgufValueType.UInt64 => new ulong[count],
                    GgufValueType.Int64 => new long[count],
                    GgufValueType.Float64 => new double[count],
                    GgufValueType.Array => new object[count],
                    _ => throw new InvalidDataException($"{path}: metadata '{key}' is an array of unknown GGUF type {(uint)elementType}"),
                };
                for (long i = 0; i < (long)count; i++) array.SetValue(ReadValue(r, elementType, length, path, key), i);
                return array;
            default:
                throw new InvalidDataException($"{path}: metadata '{key}' has unknown GGUF type {(uint)type}");
        }
    }
}
