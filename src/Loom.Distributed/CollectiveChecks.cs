using static TorchSharp.torch;

namespace Loom.Distributed;

/// <summary>The argument checks every backend makes, so that a wrong call fails the same way on one process as on many.</summary>
internal static class CollectiveChecks
{
    public static void ReduceScatter(Tensor input, Tensor output, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        SameDtype(input, output, "ReduceScatter");
        if (input.numel() != output.numel() * worldSize)
            throw new ArgumentException($"ReduceScatter: the input has {input.numel()} elements but needs world size {worldSize} × the output's {output.numel()}; size the input as {worldSize} chunks of the output");
    }

    public static void AllGather(Tensor input, Tensor output, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        SameDtype(input, output, "AllGather");
        if (output.numel() != input.numel() * worldSize)
            throw new ArgumentException($"AllGather: the output has {output.numel()} elements but needs world size {worldSize} × the input's {input.numel()}; size the output as {worldSize} chunks of the input");
    }

    public static void Root(int root, int worldSize)
    {
        if ((uint)root >= (uint)worldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"Broadcast: root {root} is not a rank of this world of {worldSize}; pass a rank in [0, {worldSize})");
    }

    private static void SameDtype(Tensor input, Tensor output, string what)
    {
        if (input.dtype != output.dtype)
            throw new ArgumentException($"{what}: the input is {input.dtype} but the output is {output.dtype}; give both the same dtype");
    }
}
