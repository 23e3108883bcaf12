using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>
/// Residual (and output-bias) additions with the alpha of <see cref="RootedScalars.One"/>: TorchSharp's <c>a + b</c>
/// builds a fresh alpha Scalar that a garbage collection can free during the native call (see <see cref="RootedScalars"/>),
/// and a decode step makes 2L of these additions, more than any other Scalar-taking op.
/// </summary>
internal static class Residual
{
    /// <summary>x + y, broadcasting as <c>+</c> does.</summary>
    public static Tensor Add(Tensor x, Tensor y) => x.add(y, RootedScalars.One);
}
