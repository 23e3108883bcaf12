using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Residual (and output-bias) additions through one <see cref="Scalar"/> that lives as long as the process.
/// TorchSharp 0.107's <c>a + b</c> builds a new Scalar alpha = 1 for every call and drops its last reference before
/// libtorch reads it, so a garbage collection that finalizes it during the native call frees it under libtorch (the
/// test suite saw it once: "Expected false to be true" from <c>Scalar::toFloat</c> in a decode step's add). A decode step
/// makes 2L of these additions, far more than any other Scalar-taking op, so they go through a rooted Scalar.
/// </summary>
internal static class Residual
{
    /// <summary>1, for every Scalar-taking addition on a hot path (a bias added in place, say).</summary>
    internal static readonly Scalar One = 1.ToScalar();

    /// <summary>x + y, broadcasting as <c>+</c> does.</summary>
    public static Tensor Add(Tensor x, Tensor y) => x.add(y, One);
}
