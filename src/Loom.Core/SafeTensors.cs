using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace Loom.Core;

/// <summary>
/// Reads and writes the safetensors format (an 8-byte little-endian header length, a JSON header
/// mapping names to dtype, shape and byte offsets, then the raw little-endian data), readable by
/// Python's <c>safetensors</c> package.
/// </summary>
public static class SafeTensors
{
    private static readonly Dictionary<torch.ScalarType, (string Name, int Size)> Types = new()
    {
        [torch.ScalarType.Float32] = ("F32", 4),
        [torch.ScalarType.Float64] = ("F64", 8),
        [torch.ScalarType.Float16] = ("F16", 2),
        [torch.ScalarType.BFloat16] = ("BF16", 2),
        [torch.ScalarType.Int64] = ("I64", 8),
        [torch.ScalarType.Int32] = ("I32", 4),
        [torch.ScalarType.Int16] = ("I16", 2),
        [torch.ScalarType.Int8] = ("I8", 1),
        [torch.ScalarType.Byte] = ("U8", 1),
        [torch.ScalarType.Bool] = ("BOOL", 1),
    };

    /// <summary>Writes tensors (copied to the CPU) with optional string metadata.</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var scope = torch.NewDisposeScope();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            header["__metadata__"] = meta;
        }
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, tensor) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            if (!Types.TryGetValue(tensor.dtype, out var type))
                throw new NotSupportedException($"safetensors: tensor '{name}' has unsupported dtype {tensor.dtype}");
            var cpu = tensor.detach().cpu().contiguous();
            byte[] bytes = cpu.bytes.ToArray();
            header[name] = new JsonObject
            {
                ["dtype"] = type.Name,
                ["shape"] = new JsonArray(cpu.shape.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        byte[] headerBytes = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (headerBytes.Length + 7) / 8 * 8; // align data to 8 bytes as the reference writer does
        using var stream = File.Create(path);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        stream.Write(len);
        stream.Write(headerBytes);
        for (int i = headerBytes.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var blob in blobs) stream.Write(blob);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Reads every tensor of a file onto the CPU. The caller owns the returned tensors.</summary>
    /// <exception cref="InvalidDataException">The file is truncated or its header is malformed.</exception>
    public static Dictionary<string, torch.Tensor> Load(string path) => Load(path, out _);

    /// <summary>Reads every tensor and the string metadata of a file onto the CPU.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        byte[] file = File.ReadAllBytes(path);
        if (file.Length < 8) throw new InvalidDataException($"{path}: not a safetensors file (too short)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (headerLength > (ulong)(file.Length - 8)) throw new InvalidDataException($"{path}: safetensors header length exceeds the file size (truncated or corrupt)");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(file.AsSpan(8, (int)headerLength))?.AsObject()
                     ?? throw new InvalidDataException($"{path}: empty safetensors header");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: safetensors header is not valid JSON ({e.Message})");
        }
        long dataStart = 8 + (long)headerLength;
        var meta = new Dictionary<string, string>();
        var result = new Dictionary<string, torch.Tensor>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) meta[k] = v!.GetValue<string>();
                continue;
            }
            var entry = node!.AsObject();
            string dtypeName = entry["dtype"]!.GetValue<string>();
            var type = Types.FirstOrDefault(t => t.Value.Name == dtypeName);
            if (type.Value.Name == null) throw new InvalidDataException($"{path}: tensor '{name}' has unsupported dtype {dtypeName}");
            long[] shape = entry["shape"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
            var offsets = entry["data_offsets"]!.AsArray();
            long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
            long expected = shape.Aggregate(1L, (a, b) => a * b) * type.Value.Size;
            if (end - begin != expected || dataStart + end > file.Length || begin < 0)
                throw new InvalidDataException($"{path}: tensor '{name}' data is out of range (truncated or corrupt file)");
            var t = torch.empty(shape, type.Key);
            file.AsSpan((int)(dataStart + begin), (int)(end - begin)).CopyTo(t.bytes);
            result[name] = t;
        }
        metadata = meta;
        return result;
    }
}
