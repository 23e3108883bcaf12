using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>
/// Adafactor (Shazeer &amp; Stern 2018) as t5x implements it and PaLM trains with it. For 1-based step t,
/// gradient g, parameter p and learning rate lr:
/// <code>
/// β2  = 1 − t^−c                                   (c = DecayRate)
/// G²  = g² + ε1
/// unfactored:  v ← β2·v + (1 − β2)·G²;   u = g / √v
/// factored:    r ← β2·r + (1 − β2)·mean_cols(G²);  k ← β2·k + (1 − β2)·mean_rows(G²)
///              u = g / √(r kᵀ / mean(r))            (Algorithm 4's R Cᵀ / 1ᵀR, with means instead of sums)
/// clipping:    u ← u / max(1, RMS(u) / d)
/// step size:   α = lr · max(ε2, RMS(p))  (or lr without parameter scaling)
/// momentum:    m ← β1·m + (1 − β1)·α·u;  Δ = m      (Δ = α·u when β1 = 0)
/// update:      p ← (1 − w)·p − Δ                    (w = decay rate, 0 where decay does not apply)
/// </code>
/// A factored tensor of shape [..., R, C] keeps <c>v_row</c> [..., R] and <c>v_col</c> [..., C]; any other
/// keeps <c>v</c> shaped like the parameter; momentum is slot <c>m</c>. All of RMS(u) and RMS(p) stay on
/// the device, so a step reads nothing back to the host.
/// </summary>
public sealed class Adafactor : IOptimizer
{
    private readonly ParameterSet _set;

    /// <summary>Creates the optimizer and its zero state for every given parameter.</summary>
    /// <param name="parameters">Named parameters, e.g. <c>module.named_parameters()</c>.</param>
    /// <param name="options">Hyper-parameters; null takes the defaults.</param>
    public Adafactor(IEnumerable<(string Name, Parameter Param)> parameters, AdafactorOptions? options = null)
    {
        Options = options ?? new AdafactorOptions();
        bool anyDecay = Options.WeightDecayRate is not null || Options.DecoupledWeightDecayFromLrSquared;
        _set = new ParameterSet(parameters, (name, p) =>
            anyDecay && WeightDecayRule.Applies(Options.DecayOnlyMatrices, Options.ExcludeFromWeightDecay, name, p));
        foreach (var p in _set.Parameters)
        {
            long[] shape = p.Parameter.shape;
            if (IsFactored(shape))
            {
                p.AddZeros("v_row", shape[..^1]);
                p.AddZeros("v_col", [.. shape[..^2], shape[^1]]);
            }
            else
            {
                p.AddZeros("v", shape);
            }
            if (Options.Beta1 > 0)
                p.AddZeros("m", shape);
        }
    }

    /// <summary>The hyper-parameters in use.</summary>
    public AdafactorOptions Options { get; }

    /// <inheritdoc/>
    public long StepCount => _set.StepCount;

    /// <inheritdoc/>
    public void Step(double learningRate) => _set.Step(this, learningRate, (p, grad, t) =>
    {
        var o = Options;
        var param = p.Parameter;
        double beta2 = 1 - Math.Pow(t, -o.DecayRate);
        var gradSq = grad.square().add_(o.Epsilon1);                                     // [..., R, C]
        torch.Tensor u;
        if (IsFactored(param.shape))
        {
            var vRow = p["v_row"].mul_(beta2).add_(gradSq.mean([-1]), alpha: 1 - beta2);  // [..., R]
            var vCol = p["v_col"].mul_(beta2).add_(gradSq.mean([-2]), alpha: 1 - beta2);  // [..., C]
            var rowFactor = (vRow / vRow.mean([-1], keepdim: true)).rsqrt_().unsqueeze(-1); // [..., R, 1]
            var colFactor = vCol.rsqrt().unsqueeze(-2);                                    // [..., 1, C]
            u = grad * rowFactor * colFactor;                                              // [..., R, C]
        }
        else
        {
            var v = p["v"].mul_(beta2).add_(gradSq, alpha: 1 - beta2);                     // [param shape]
            u = grad * v.rsqrt();                                                          // [param shape]
        }
        if (o.ClipThreshold is double d)
            u.div_(Rms(u).div_(d).clamp_min_(1.0));                                        // [] divisor >= 1
        if (o.MultiplyByParameterScale)
            u.mul_(Rms(param).clamp_min_(o.Epsilon2).mul_(learningRate));                  // [] α
        else
            u.mul_(learningRate);
        if (o.Beta1 > 0)
            u = p["m"].mul_(o.Beta1).add_(u, alpha: 1 - o.Beta1);                          // [param shape]
        if (p.Decays)
        {
            double rate = o.DecoupledWeightDecayFromLrSquared
                ? (o.WeightDecayRate ?? 1.0) * learningRate * learningRate
                : o.WeightDecayRate ?? 0.0;
            param.mul_(1 - rate);
        }
        param.sub_(u);
    });

    /// <inheritdoc/>
    public void ZeroGrad() => _set.ZeroGrad(this);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, torch.Tensor> StateTensors() => _set.StateTensors(this);

    /// <inheritdoc/>
    public void LoadState(IReadOnlyDictionary<string, torch.Tensor> state, long stepCount) => _set.LoadState(this, state, stepCount);

    /// <summary>Frees the state tensors; the parameters are the caller's and are left alone.</summary>
    public void Dispose() => _set.Dispose();

    private bool IsFactored(long[] shape) =>
        Options.Factored && shape.Length >= 2 && shape[^1] >= Options.MinDimSizeToFactor && shape[^2] >= Options.MinDimSizeToFactor;

    // Root mean square over every element, as a 0-dim tensor on the input's device.
    private static torch.Tensor Rms(torch.Tensor x) => x.square().mean().sqrt_(); // []
}
