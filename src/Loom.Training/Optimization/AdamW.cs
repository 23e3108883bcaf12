using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>
/// Adam with decoupled weight decay (Loshchilov &amp; Hutter 2019), written to follow PyTorch's and
/// TorchSharp's <c>AdamW</c> operation for operation. For step t (1-based), gradient g and learning rate lr:
/// <code>
/// p   ← p · (1 − lr·λ)                      (decayed parameters only)
/// m   ← β1·m + (1 − β1)·g
/// v   ← β2·v + (1 − β2)·g²
/// p   ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
/// </code>
/// Unlike PyTorch, t is the optimizer's global <see cref="StepCount"/>, not a per-parameter count, so
/// a parameter that missed a step (no gradient) is bias-corrected as if it had taken part.
/// State slots: <c>exp_avg</c> (m) and <c>exp_avg_sq</c> (v), shaped like the parameter.
/// </summary>
public sealed class AdamW : IOptimizer
{
    private readonly ParameterSet _set;

    /// <summary>Creates the optimizer and its zero state for every given parameter.</summary>
    /// <param name="parameters">Named parameters, e.g. <c>module.named_parameters()</c>.</param>
    /// <param name="options">Hyper-parameters; null takes the defaults.</param>
    public AdamW(IEnumerable<(string Name, Parameter Param)> parameters, AdamWOptions? options = null)
    {
        Options = options ?? new AdamWOptions();
        _set = new ParameterSet(parameters, (name, p) =>
            Options.WeightDecay > 0 && WeightDecayRule.Applies(Options.DecayOnlyMatrices, Options.ExcludeFromWeightDecay, name, p));
        foreach (var p in _set.Parameters)
        {
            p.AddZeros("exp_avg", p.Parameter.shape);
            p.AddZeros("exp_avg_sq", p.Parameter.shape);
        }
    }

    /// <summary>The hyper-parameters in use.</summary>
    public AdamWOptions Options { get; }

    /// <inheritdoc/>
    public long StepCount => _set.StepCount;

    /// <inheritdoc/>
    public void Step(double learningRate) => _set.Step(this, learningRate, (p, grad, t) =>
    {
        var (b1, b2) = (Options.Beta1, Options.Beta2);
        var param = p.Parameter;
        var expAvg = p.Slots[0].Tensor;
        var expAvgSq = p.Slots[1].Tensor;
        if (p.Decays)
            param.mul_(1 - learningRate * Options.WeightDecay);
        double biasCorrection1 = 1 - Math.Pow(b1, t);
        double biasCorrection2 = 1 - Math.Pow(b2, t);
        expAvg.mul_(b1).add_(grad, alpha: 1 - b1);                               // [param shape]
        expAvgSq.mul_(b2).addcmul_(grad, grad, value: 1 - b2);                   // [param shape]
        var denom = (expAvgSq.sqrt() / Math.Sqrt(biasCorrection2)).add_(Options.Epsilon); // [param shape]
        param.addcdiv_(expAvg, denom, value: -learningRate / biasCorrection1);
    });

    /// <inheritdoc/>
    public void ZeroGrad() => _set.ZeroGrad(this);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, torch.Tensor> StateTensors() => _set.StateTensors(this);

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, torch.Tensor> state, long stepCount) => _set.LoadState(this, state, stepCount);

    /// <summary>Frees the state tensors; the parameters are the caller's and are left alone.</summary>
    public void Dispose() => _set.Dispose();
}
