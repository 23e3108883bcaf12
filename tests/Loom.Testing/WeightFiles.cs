using Loom.Core;
using Xunit;
using static TorchSharp.torch;

namespace Loom.Testing;

/// <summary>Compares the weights of two safetensors files, as the multi-process training tests do.</summary>
public static class WeightFiles
{
    /// <summary>The largest, over tensors, of max |a − b| / max |a|; the two files must hold the same tensor names.</summary>
    public static double MaxRelativeDifference(string a, string b)
    {
        using var scope = NewDisposeScope();
        var left = SafeTensors.Load(a);
        var right = SafeTensors.Load(b);
        Assert.Equal(left.Keys.Order(), right.Keys.Order());
        return left.Max(p =>
        {
            var x = p.Value.to(float64);
            var y = right[p.Key].to(float64);
            return (x - y).abs().max().item<double>() / Math.Max(x.abs().max().item<double>(), 1e-30);
        });
    }
}
