using static TorchSharp.torch;

namespace Loom.Models.Quantization;

/// <summary>
/// Symmetric per-output-channel int8 quantization of a linear kernel W, (out, in):
/// scale[o] = max|W[o, :]| / 127 and q[o, i] = round(W[o, i] / scale[o]) in [-127, 127], so that
/// W ≈ q · scale[:, None] with an error of at most scale[o] / 2 per element. -128 is never used,
/// which keeps the range symmetric and negation exact.
/// </summary>
public static class Int8Weights
{
    /// <summary>Largest magnitude of a quantized value.</summary>
    public const int MaxLevel = 127;

    /// <summary>
    /// Quantizes <paramref name="weight"/>, (out, in), into int8 values, (out, in), and float32
    /// scales, (out). A row of zeros gets scale 0 and all-zero values, so it dequantizes exactly.
    /// </summary>
    public static (Tensor Values, Tensor Scales) Quantize(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.dim() != 2) throw new ArgumentException($"expected a 2-D kernel (out, in), got shape [{string.Join(", ", weight.shape)}]", nameof(weight));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w = weight.detach().to(float32);                                  // (out, in)
        var scales = w.abs().amax(new long[] { 1 }) / MaxLevel;               // (out)
        var divisor = where(scales > 0, scales, ones_like(scales));           // (out), zero rows divide by 1: 0 / 1 = 0
        var values = (w / divisor.unsqueeze(1)).round().clamp(-MaxLevel, MaxLevel).to(int8); // (out, in)
        return (values.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope());
    }

    /// <summary>The float kernel, (out, in), that <paramref name="values"/> and <paramref name="scales"/> stand for, in <paramref name="dtype"/>.</summary>
    public static Tensor Dequantize(Tensor values, Tensor scales, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(scales);
        return values.to(dtype) * scales.to(dtype).unsqueeze(1); // (out, in)
    }

    /// <summary>
    /// y = x Wᵀ (+ b) with W held as int8 <paramref name="values"/> and <paramref name="scales"/>.
    /// Since W = q · diag(scale) row-wise, x Wᵀ = (x qᵀ) · scale: the scale is applied to the output,
    /// (..., out), instead of to the (out, in) kernel, saving a full pass over the weights.
    /// TorchSharp exposes no int8 matrix multiply (libtorch's CPU int8 kernels are not bound), so q
    /// is widened to the activations' dtype for the product: memory is saved at rest, not compute.
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor values, Tensor scales, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(x);
        var y = nn.functional.linear(x, values.to(x.dtype)) * scales.to(x.dtype); // (..., out)
        return bias is null ? y : y + bias.to(x.dtype);
    }

    /// <summary>Reference for <see cref="Linear"/>: dequantizes the whole kernel, then applies it.</summary>
    public static Tensor ReferenceLinear(Tensor x, Tensor values, Tensor scales, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(x);
        return nn.functional.linear(x, Dequantize(values, scales, x.dtype), bias?.to(x.dtype)); // (..., out)
    }
}
