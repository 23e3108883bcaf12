using Loom.Core;
using Loom.Models;
using Loom.Models.Parallelism;
using Xunit;
using static TorchSharp.torch;

namespace Loom.Testing;

/// <summary>Compares the weights of two checkpoints, as the multi-process training tests do.</summary>
public static class WeightFiles
{
    /// <summary>
    /// The largest, over tensors, of max |a − b| / max |a|; each of <paramref name="a"/> and <paramref name="b"/> is a
    /// safetensors file or a checkpoint folder (a sharded one put back together), and the two must hold the same tensor names.
    /// </summary>
    public static double MaxRelativeDifference(string a, string b)
    {
        using var scope = NewDisposeScope();
        var left = Whole(a);
        var right = Whole(b);
        Assert.Equal(left.Keys.Order(), right.Keys.Order());
        return left.Max(p =>
        {
            var x = p.Value.to(float64);
            var y = right[p.Key].to(float64);
            return (x - y).abs().max().item<double>() / Math.Max(x.abs().max().item<double>(), 1e-30);
        });
    }

    /// <summary>The whole model weights of a safetensors file or of a checkpoint folder (whole or sharded).</summary>
    public static Dictionary<string, Tensor> Whole(string fileOrCheckpoint)
    {
        if (File.Exists(fileOrCheckpoint)) return SafeTensors.Load(fileOrCheckpoint);
        return CheckpointIndex.IsSharded(fileOrCheckpoint)
            ? ShardedTensors.ReadWhole(fileOrCheckpoint, CheckpointIndex.Read(fileOrCheckpoint).Model, out _)
            : SafeTensors.Load(Path.Combine(fileOrCheckpoint, ModelCheckpoint.WeightsFile));
    }
}
