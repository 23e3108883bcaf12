using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>Clipping of gradients by their global L2 norm, without reading anything back to the host.</summary>
public static class GradientClipping
{
    // Same guard as torch.nn.utils.clip_grad_norm_: keeps the coefficient finite when the norm is 0.
    private const double NormGuard = 1e-6;

    /// <summary>
    /// Scales <paramref name="gradients"/> in place by min(1, maxNorm / (‖g‖ + 1e-6)), where ‖g‖ is the L2
    /// norm of all their elements together (as <c>torch.nn.utils.clip_grad_norm_</c> does). A non-finite norm
    /// makes every gradient non-finite, as PyTorch's default does; the caller can check the returned norm.
    /// </summary>
    /// <param name="gradients">Gradient tensors; they may live on any devices (norms are gathered on the first one's).</param>
    /// <param name="maxNorm">The largest global norm to allow; finite and &gt; 0.</param>
    /// <returns>
    /// The pre-clip global norm as a 0-dim tensor (float64 if every gradient is float64, else float32) on the
    /// first gradient's device, or a CPU zero when there are none. It is not read back here: the caller
    /// decides when to pay for <c>.item()</c>. The tensor belongs to the caller's dispose scope, if one is open.
    /// </returns>
    public static torch.Tensor ClipGlobalNorm(IEnumerable<torch.Tensor> gradients, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        OptionCheck.Positive(maxNorm, nameof(maxNorm));
        var grads = gradients.ToList();
        if (grads.Count == 0)
            return torch.zeros([], torch.float32);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var device = grads[0].device;
        // Half-precision norms lose too much (and overflow); accumulate in float32 unless all are float64.
        var normType = grads.All(g => g.dtype == torch.float64) ? torch.float64 : torch.float32;
        var norms = grads.Select(g => torch.linalg.vector_norm(g.to(normType)).to(device)).ToArray(); // each []
        var total = torch.linalg.vector_norm(torch.stack(norms));                                     // []
        var coefficient = (maxNorm / (total + NormGuard)).clamp_max_(1.0);                              // []
        foreach (var g in grads)
            g.mul_(coefficient.to(g.dtype, g.device));
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="ClipGlobalNorm(IEnumerable{torch.Tensor}, double)"/> over the <c>.grad</c> of each
    /// parameter; parameters without a gradient are skipped.
    /// </summary>
    /// <param name="parameters">Parameters whose gradients to clip.</param>
    /// <param name="maxNorm">The largest global norm to allow; finite and &gt; 0.</param>
    /// <returns>The pre-clip global norm, as for the tensor overload.</returns>
    public static torch.Tensor ClipGlobalNormOfParameters(IEnumerable<Parameter> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        using var scope = torch.NewDisposeScope();
        var grads = parameters.Select(p => p.grad).OfType<torch.Tensor>().ToList();
        return ClipGlobalNorm(grads, maxNorm).MoveToOuterDisposeScope();
    }
}
