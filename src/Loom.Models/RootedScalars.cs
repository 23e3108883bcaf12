using TorchSharp;

namespace Loom.Models;

/// <summary>
/// Scalars that live as long as the process, for Scalar-taking ops on hot paths. TorchSharp 0.107 turns a .NET number
/// passed where a Scalar is expected (the alpha of <c>a + b</c>, the bound of <c>clamp_min(0)</c>) into a new native Scalar
/// that no dispose scope tracks and that nothing references once its handle has been read, so a garbage collection during
/// the native call can finalize it and free it under libtorch. The test suite saw it twice ("Expected false to be true"
/// from <c>Scalar::toFloat</c>, in a decode step's add and in speculative sampling's clamp). Passing one of these instead,
/// or a Scalar held by a <c>using</c> until after the call, keeps it alive. Only TorchSharp can mend every call.
/// </summary>
public static class RootedScalars
{
    /// <summary>0.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>1 (the alpha of an addition or subtraction).</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>−∞ (a masked logit).</summary>
    public static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
}
