namespace Loom.Training.Optimization;

/// <summary>
/// Hyper-parameters of <see cref="Adafactor"/>, named as in t5x's <c>adafactor.py</c>. Each field is
/// checked when it is set. The defaults are t5x's, except that factoring is off as in PaLM;
/// <see cref="PaLM"/> is PaLM's full recipe.
/// </summary>
public sealed record AdafactorOptions
{
    /// <summary>
    /// PaLM (Chowdhery et al. 2022, §5): β1 = 0.9, β2 = 1 − t^−0.8, ε1 = 1e-30, ε2 = 1e-3, update clipping 1.0,
    /// parameter-scaled steps, no factoring, and weight decay lr² on every parameter.
    /// </summary>
    public static AdafactorOptions PaLM { get; } = new() { DecoupledWeightDecayFromLrSquared = true };

    /// <summary>
    /// Momentum on the (scaled, clipped) update, in [0, 1). Default 0.9. Zero turns momentum off and
    /// allocates no <c>m</c> slot.
    /// </summary>
    public double Beta1 { get; init => field = OptionCheck.UnitInterval(value, nameof(Beta1)); } = 0.9;

    /// <summary>
    /// Exponent c of the second-moment decay β2(t) = 1 − t^−c for 1-based step t, in [0, 1]. Default 0.8.
    /// β2(1) = 0, so the first step uses the current squared gradient alone.
    /// </summary>
    public double DecayRate { get; init => field = value >= 0 && value <= 1 ? value : throw OptionCheck.Fail(nameof(DecayRate), value, "in [0, 1]"); } = 0.8;

    /// <summary>ε1, added to every squared gradient before it is averaged; finite and &gt; 0. Default 1e-30.</summary>
    public double Epsilon1 { get; init => field = OptionCheck.Positive(value, nameof(Epsilon1)); } = 1e-30;

    /// <summary>ε2, the floor on a parameter's RMS when steps are parameter-scaled; finite and &gt;= 0. Default 1e-3.</summary>
    public double Epsilon2 { get; init => field = OptionCheck.NonNegative(value, nameof(Epsilon2)); } = 1e-3;

    /// <summary>
    /// Update clipping threshold d: the normalised update u becomes u / max(1, RMS(u)/d). Finite and &gt; 0,
    /// or null for no clipping. Default 1.0.
    /// </summary>
    public double? ClipThreshold
    {
        get;
        init => field = value is null ? null : OptionCheck.Positive(value.Value, nameof(ClipThreshold));
    } = 1.0;

    /// <summary>When true (default) the step size is lr · max(ε2, RMS(parameter)); otherwise lr.</summary>
    public bool MultiplyByParameterScale { get; init; } = true;

    /// <summary>
    /// When true, tensors with two or more dimensions whose last two dimensions are both at least
    /// <see cref="MinDimSizeToFactor"/> keep row and column second-moment averages
    /// (Shazeer &amp; Stern 2018, Algorithm 4) instead of a full one. Default false, as in PaLM.
    /// </summary>
    public bool Factored { get; init; }

    /// <summary>
    /// The smallest size that both of the last two dimensions need for a tensor to be factored, &gt;= 1.
    /// Default 128, as in t5x (factoring a narrow matrix saves little and loses accuracy).
    /// </summary>
    public long MinDimSizeToFactor { get; init => field = OptionCheck.Positive(value, nameof(MinDimSizeToFactor)); } = 128;

    /// <summary>
    /// Decoupled weight decay rate w in [0, 1), or null for none. Default null. A decayed parameter
    /// becomes (1 − w)·p − update each step; w is not multiplied by the learning rate (t5x semantics),
    /// except as <see cref="DecoupledWeightDecayFromLrSquared"/> says.
    /// </summary>
    public double? WeightDecayRate
    {
        get;
        init => field = value is null ? null : OptionCheck.UnitInterval(value.Value, nameof(WeightDecayRate));
    }

    /// <summary>
    /// PaLM's "weight decay lr²" (t5x <c>weight_decay_rate_lr_exponent = 2</c>). When true, the decay rate
    /// of a step with learning rate lr is (WeightDecayRate ?? 1) · lr², so with no WeightDecayRate a decayed
    /// parameter becomes (1 − lr²)·p − update: at PaLM's lr = 1e-2 that shrinks it by 1e-4 per step,
    /// before and independently of the Adafactor update, which is computed from the undecayed p.
    /// Default false.
    /// </summary>
    public bool DecoupledWeightDecayFromLrSquared { get; init; }

    /// <summary>When true, only tensors with two or more dimensions are decayed. Default false (t5x decays all).</summary>
    public bool DecayOnlyMatrices { get; init; }

    /// <summary>Optional rule, by parameter name, for parameters never decayed. Null excludes none.</summary>
    public Func<string, bool>? ExcludeFromWeightDecay { get; init; }
}
