using Loom.Models.Parallelism;
using Loom.Training.Optimization;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.DataParallelism;

/// <summary>
/// The gradient bookkeeping of tensor parallelism that autograd does not do by itself: replicated parameters inside a
/// sharded sublayer (multi-query keys and values) get only this rank's heads' part of their gradient, summed here over
/// the model group; and the global norm for clipping counts every split parameter's parts once and every replicated
/// parameter once, so that each rank clips by the whole model's norm.
/// </summary>
public sealed class TensorParallelGradients
{
    // Same guard as torch.nn.utils.clip_grad_norm_ and GradientClipping.
    private const double NormGuard = 1e-6;

    private readonly TensorParallelLayout layout;
    private readonly (string Name, Parameter Param)[] parameters;

    /// <summary>Tracks <paramref name="parameters"/> (this rank's parts) laid out as <paramref name="layout"/> says.</summary>
    public TensorParallelGradients(TensorParallelLayout layout, IEnumerable<(string Name, Parameter Param)> parameters)
    {
        this.layout = layout ?? throw new ArgumentNullException(nameof(layout));
        this.parameters = [.. parameters ?? throw new ArgumentNullException(nameof(parameters))];
    }

    /// <summary>Sums the partial gradients of <see cref="TensorParallelLayout.PartialGradients"/> over the model group.</summary>
    public void SumPartialGradients()
    {
        if (layout.Parts == 1) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, p) in parameters)
        {
            if (!layout.PartialGradients.Contains(name)) continue;
            var grad = p.grad ?? zeros_like(p);
            layout.Group.AllReduce(grad);
            if (p.grad is null) p.grad = grad.DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// Scales every gradient so that the whole model's gradient norm is at most <paramref name="maxNorm"/>; returns
    /// the norm before clipping (a float32 scalar), the same on every rank of the model group.
    /// </summary>
    public Tensor ClipGlobalNorm(double maxNorm)
    {
        if (layout.Parts == 1) return GradientClipping.ClipGlobalNormOfParameters(parameters.Select(p => p.Param), maxNorm);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var withGradients = parameters.Where(p => p.Param.grad is not null).ToList();
        var device = parameters[0].Param.device;
        Tensor SquaredNorm(IEnumerable<(string Name, Parameter Param)> ps)
        {
            var sum = zeros(1, float32, device);
            foreach (var (_, p) in ps) sum.add_(p.grad!.to(float32).pow(2).sum());
            return sum;
        }
        var split = SquaredNorm(withGradients.Where(p => layout.ShardedDim(p.Name) is not null)); // (1), this rank's parts
        layout.Group.AllReduce(split);                                                           // (1), every part
        var total = (split + SquaredNorm(withGradients.Where(p => layout.ShardedDim(p.Name) is null))).sqrt().reshape([]); // []
        var coefficient = (maxNorm / (total + NormGuard)).clamp_max_(1.0);
        foreach (var (_, p) in withGradients) p.grad!.mul_(coefficient.to(p.grad!.dtype));
        return total.MoveToOuterDisposeScope();
    }
}
