using Loom.Core;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Tensors written in parts by the ranks of a model group, put back together, and checked against their index.</summary>
public sealed class ShardedTensorsTests
{
    private static (Dictionary<string, Tensor> Whole, IReadOnlyDictionary<string, ShardedTensorEntry> Entries) WriteTwoParts(string directory)
    {
        using var g = Seeded.Generator(1);
        var whole = new Dictionary<string, Tensor>
        {
            ["rows"] = randn([6, 3], generator: g),    // split along dim 0
            ["columns"] = randn([3, 4], generator: g), // split along dim 1
            ["norm"] = randn([3], generator: g),       // replicated
        };
        int? Split(string name) => name switch { "rows" => 0, "columns" => 1, _ => null };
        IReadOnlyDictionary<string, ShardedTensorEntry>? entries = null;
        for (int part = 0; part < 2; part++)
        {
            var local = whole.ToDictionary(p => p.Key, p => Split(p.Key) is int d ? ShardedTensors.Part(p.Value, d, part, 2) : p.Value);
            var written = ShardedTensors.Write(directory, "model", local, Split, part, 2, new Dictionary<string, string> { ["format"] = "pt" });
            if (entries is not null) Assert.Equal(entries.Keys, written.Keys); // every rank computes the same index
            entries = written;
        }
        return (whole, entries!);
    }

    [Fact]
    public void PartsWrittenByTwoRanksReadBackWhole()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-sharded-");
        var (whole, entries) = WriteTwoParts(temp.Path);
        Assert.Equal([6L, 3L], entries["rows"].Shape);
        Assert.Equal(1, entries["columns"].SplitDim);
        Assert.Equal(["model-00000-of-00002.safetensors"], entries["norm"].Files);
        Assert.False(SafeTensors.Load(temp.File("model-00001-of-00002.safetensors")).ContainsKey("norm")); // written once

        var read = ShardedTensors.ReadWhole(temp.Path, entries, out var metadata);
        Assert.Equal("pt", metadata["format"]);
        foreach (var (name, tensor) in whole) Assert.True(tensor.equal(read[name]).all().item<bool>(), name);
    }

    [Fact]
    public void AnIndexThatDoesNotMatchItsShardsIsRefused()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-sharded-");
        var (_, entries) = WriteTwoParts(temp.Path);

        var wrongShape = new Dictionary<string, ShardedTensorEntry>(entries) { ["rows"] = entries["rows"] with { Shape = [8, 3] } };
        var shape = Assert.Throws<InvalidDataException>(() => ShardedTensors.ReadWhole(temp.Path, wrongShape, out _));
        Assert.Contains("the checkpoint index does not match its shards: 'rows' in model-00000-of-00002.safetensors has shape [3, 3], the index implies [4, 3]", shape.Message);

        var missing = new Dictionary<string, ShardedTensorEntry>(entries) { ["extra"] = entries["norm"] };
        Assert.Contains("'extra' is listed in model-00000-of-00002.safetensors but not there", Assert.Throws<InvalidDataException>(() => ShardedTensors.ReadWhole(temp.Path, missing, out _)).Message);

        var unlisted = new Dictionary<string, ShardedTensorEntry>(entries);
        unlisted.Remove("norm");
        Assert.Contains("holds 'norm', which the index does not list there", Assert.Throws<InvalidDataException>(() => ShardedTensors.ReadWhole(temp.Path, unlisted, out _)).Message);

        File.Delete(temp.File("model-00001-of-00002.safetensors"));
        Assert.Contains("lists model-00001-of-00002.safetensors, which is missing", Assert.Throws<InvalidDataException>(() => ShardedTensors.ReadWhole(temp.Path, entries, out _)).Message);
    }

    [Fact]
    public void AShardedCheckpointWithoutItsCommitMarkerIsIncomplete()
    {
        using var temp = new TempDirectory("loom-sharded-");
        Assert.True(CheckpointIndex.IsCommitted(temp.Path)); // a whole checkpoint needs no marker
        new CheckpointIndex { MeshModel = 2 }.Write(temp.Path);
        Assert.False(CheckpointIndex.IsCommitted(temp.Path));
        Assert.Contains("was never committed", Assert.Throws<InvalidDataException>(() => CheckpointIndex.Read(temp.Path)).Message);
        File.WriteAllText(temp.File(CheckpointIndex.CommitMarker), "10");
        Assert.True(CheckpointIndex.IsCommitted(temp.Path));
        Assert.Equal(2, CheckpointIndex.Read(temp.Path).MeshModel);
    }
}
