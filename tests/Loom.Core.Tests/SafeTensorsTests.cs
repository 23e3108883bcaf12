using System.Buffers.Binary;
using System.Text;
using Loom.Core;
using static TorchSharp.torch;

namespace Loom.Core.Tests;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-st-");

    private string file => temp.File("tensors.safetensors");

    public void Dispose() => temp.Dispose();

    [Fact]
    public void RoundTripsTensorsOfEveryDtypeWithMetadata()
    {
        using var _ = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["a.weight"] = randn(3, 5),
            ["b"] = arange(7, dtype: int64),
            ["c"] = tensor(new byte[] { 1, 2, 250 }),
            ["d"] = randn(2, 2).to(bfloat16),
            ["scalar"] = tensor(3.5f),
        };
        SafeTensors.Save(file, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var loaded = SafeTensors.Load(file, out var metadata);
        Assert.Equal("pt", metadata["format"]);
        Assert.Equal(tensors.Keys.Order(), loaded.Keys.Order());
        foreach (var (name, t) in tensors)
        {
            Assert.Equal(t.dtype, loaded[name].dtype);
            Assert.Equal(t.shape, loaded[name].shape);
            Assert.True(t.eq(loaded[name]).all().item<bool>(), name);
        }
    }

    [Fact]
    public void FollowsTheFormatByteForByte()
    {
        using var _ = NewDisposeScope();
        SafeTensors.Save(file, new Dictionary<string, Tensor> { ["x"] = tensor(new float[] { 1, 2 }) });
        byte[] bytes = File.ReadAllBytes(file);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8); // data aligned to 8 bytes
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength).TrimEnd();
        Assert.Equal("""{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", header);
        Assert.Equal(new byte[] { 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40 }, bytes[(8 + (int)headerLength)..]);
    }

    [Fact]
    public void TruncatedOrGarbageFilesAreRefusedWithTheFileName()
    {
        using var _ = NewDisposeScope();
        SafeTensors.Save(file, new Dictionary<string, Tensor> { ["x"] = randn(10) });
        byte[] bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^4]);
        Assert.Contains(file, Assert.Throws<InvalidDataException>(() => SafeTensors.Load(file)).Message);
        File.WriteAllBytes(file, new byte[] { 1, 2, 3 });
        Assert.Contains(file, Assert.Throws<InvalidDataException>(() => SafeTensors.Load(file)).Message);
        File.WriteAllBytes(file, new byte[] { 4, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'x', (byte)'x', (byte)'}' });
        Assert.Contains("JSON", Assert.Throws<InvalidDataException>(() => SafeTensors.Load(file)).Message);
    }
}
