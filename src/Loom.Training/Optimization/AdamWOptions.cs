namespace Loom.Training.Optimization;

/// <summary>
/// Hyper-parameters of <see cref="AdamW"/>. Each field is checked when it is set, so an out-of-range
/// record cannot be built.
/// </summary>
public sealed record AdamWOptions
{
    /// <summary>Decay of the first-moment average, in [0, 1). Default 0.9.</summary>
    public double Beta1 { get; init => field = OptionCheck.UnitInterval(value, nameof(Beta1)); } = 0.9;

    /// <summary>Decay of the second-moment average, in [0, 1). Default 0.95 (large-model practice; PyTorch's is 0.999).</summary>
    public double Beta2 { get; init => field = OptionCheck.UnitInterval(value, nameof(Beta2)); } = 0.95;

    /// <summary>Added to the bias-corrected RMS in the denominator, finite and &gt;= 0. Default 1e-8.</summary>
    public double Epsilon { get; init => field = OptionCheck.NonNegative(value, nameof(Epsilon)); } = 1e-8;

    /// <summary>
    /// Decoupled weight decay, finite and &gt;= 0. Default 0.1. Each step multiplies a decayed parameter
    /// by <c>1 - lr * WeightDecay</c> (the PyTorch / TorchSharp AdamW convention, so decay follows the schedule).
    /// </summary>
    public double WeightDecay { get; init => field = OptionCheck.NonNegative(value, nameof(WeightDecay)); } = 0.1;

    /// <summary>
    /// When true (the default), only tensors with two or more dimensions (weight matrices, embeddings)
    /// are decayed; biases and norm gains are not.
    /// </summary>
    public bool DecayOnlyMatrices { get; init; } = true;

    /// <summary>
    /// Optional rule, by parameter name, for parameters never decayed (applied on top of
    /// <see cref="DecayOnlyMatrices"/>). Null decays every parameter the dimension rule allows.
    /// </summary>
    public Func<string, bool>? ExcludeFromWeightDecay { get; init; }
}
