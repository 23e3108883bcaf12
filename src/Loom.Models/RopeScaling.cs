namespace Loom.Models;

/// <summary>How <see cref="RopeScaling"/> stretches rotary positions over a longer context than the model was trained on.</summary>
public enum RopeScalingType
{
    /// <summary>Position interpolation (Chen et al. 2023): every frequency divided by the factor, i.e. positions divided by it.</summary>
    Linear,

    /// <summary>
    /// Llama 3.1's scaling: frequencies whose wavelength is shorter than the original context / high_freq_factor kept,
    /// those longer than original context / low_freq_factor divided by the factor, and a smooth blend in between.
    /// </summary>
    Llama3,

    /// <summary>
    /// NTK-aware scaling (bloc97), static: the base raised to base · factor^(d/(d−2)), so that the lowest frequency is
    /// divided by the factor and the highest kept; transformers' <c>_compute_ntk_parameters</c> (<c>rope_type</c> "ntk").
    /// </summary>
    Ntk,

    /// <summary>
    /// YaRN (Peng et al. 2023): frequencies that turn fewer than beta_slow times over the original context divided by
    /// the factor, those turning more than beta_fast times kept, a linear ramp over the dimensions between, and cos and
    /// sin multiplied by an attention factor (0.1 · ln(factor) + 1 by default); transformers' <c>_compute_yarn_parameters</c>.
    /// </summary>
    Yarn,
}

/// <summary>
/// Rotary position scaling, as transformers' <c>rope_scaling</c> gives it (<c>model.rope_scaling</c>; null = none).
/// The fields beyond <see cref="Type"/> and <see cref="Factor"/> belong to one type each and are null for the others,
/// so that options equal to a Hugging Face config round-trip exactly.
/// </summary>
public sealed record RopeScaling
{
    /// <summary>The scaling rule.</summary>
    public RopeScalingType Type { get; init; } = RopeScalingType.Linear;

    /// <summary>How many times longer the new context is than the trained one (at least 1).</summary>
    public double Factor { get; init; } = 1;

    /// <summary>Llama 3 only: wavelengths longer than original_max_position_embeddings / this are divided by the factor.</summary>
    public double? LowFreqFactor { get; init; }

    /// <summary>Llama 3 only: wavelengths shorter than original_max_position_embeddings / this are kept.</summary>
    public double? HighFreqFactor { get; init; }

    /// <summary>Llama 3 and YaRN: the context length the model was pretrained with.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>YaRN only: dimensions turning more than this many times over the original context are kept (null: 32).</summary>
    public double? BetaFast { get; init; }

    /// <summary>YaRN only: dimensions turning fewer than this many times over the original context are interpolated (null: 1).</summary>
    public double? BetaSlow { get; init; }

    /// <summary>YaRN only: what cos and sin are multiplied by; null: computed from the factor (and <see cref="Mscale"/>).</summary>
    public double? AttentionFactor { get; init; }

    /// <summary>YaRN only (DeepSeek): with <see cref="MscaleAllDim"/>, the attention factor is mscale(factor, this) / mscale(factor, mscale_all_dim).</summary>
    public double? Mscale { get; init; }

    /// <summary>YaRN only (DeepSeek): see <see cref="Mscale"/>.</summary>
    public double? MscaleAllDim { get; init; }

    /// <summary>YaRN only: round the ramp's ends to whole dimensions (floor, ceil) as the paper does; null: true (gpt-oss: false).</summary>
    public bool? Truncate { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field; returns the options.</summary>
    public RopeScaling Validate()
    {
        if (!Enum.IsDefined(Type)) throw new ArgumentException($"model.rope_scaling.type = {Type} is not a known scaling: use linear, llama3, ntk or yarn");
        if (!(Factor >= 1)) throw new ArgumentException($"model.rope_scaling.factor = {Factor} must be at least 1");
        if (Type == RopeScalingType.Llama3)
        {
            if (LowFreqFactor is not { } low || !(low > 0)) throw new ArgumentException($"model.rope_scaling.low_freq_factor = {LowFreqFactor?.ToString() ?? "null"} must be positive for llama3 scaling");
            if (HighFreqFactor is not { } high || !(high > low)) throw new ArgumentException($"model.rope_scaling.high_freq_factor = {HighFreqFactor?.ToString() ?? "null"} must be greater than low_freq_factor = {low} for llama3 scaling");
            if (OriginalMaxPositionEmbeddings is not > 0) throw new ArgumentException($"model.rope_scaling.original_max_position_embeddings = {OriginalMaxPositionEmbeddings?.ToString() ?? "null"} must be a positive integer for llama3 scaling");
        }
        else if (LowFreqFactor is not null || HighFreqFactor is not null || (OriginalMaxPositionEmbeddings is not null && Type != RopeScalingType.Yarn))
        {
            throw new ArgumentException($"model.rope_scaling.type = {Type}: low_freq_factor, high_freq_factor and original_max_position_embeddings belong to llama3 scaling; drop them");
        }
        if (Type == RopeScalingType.Yarn)
        {
            if (OriginalMaxPositionEmbeddings is not > 0) throw new ArgumentException($"model.rope_scaling.original_max_position_embeddings = {OriginalMaxPositionEmbeddings?.ToString() ?? "null"} must be a positive integer for yarn scaling");
            if (BetaFast is { } fast && !(fast > 0)) throw new ArgumentException($"model.rope_scaling.beta_fast = {fast} must be positive, or null for 32");
            if (BetaSlow is { } slow && !(slow > 0)) throw new ArgumentException($"model.rope_scaling.beta_slow = {slow} must be positive, or null for 1");
            if (AttentionFactor is { } factor && !(factor > 0)) throw new ArgumentException($"model.rope_scaling.attention_factor = {factor} must be positive, or null to compute it");
        }
        else if (BetaFast is not null || BetaSlow is not null || AttentionFactor is not null || Mscale is not null || MscaleAllDim is not null || Truncate is not null)
        {
            throw new ArgumentException($"model.rope_scaling.type = {Type}: beta_fast, beta_slow, attention_factor, mscale, mscale_all_dim and truncate belong to yarn scaling; drop them");
        }
        return this;
    }

    /// <summary>
    /// The scaled inverse frequencies, (Dh/2) values, from the unscaled ones base^(-2i/Dh) of <paramref name="ropeBase"/>, as
    /// transformers' <c>_compute_linear_scaling_rope_parameters</c>, <c>_compute_llama3_parameters</c>,
    /// <c>_compute_ntk_parameters</c> and <c>_compute_yarn_parameters</c> compute them (in float64).
    /// </summary>
    public double[] Apply(double[] inverseFrequencies, double ropeBase)
    {
        ArgumentNullException.ThrowIfNull(inverseFrequencies);
        int dim = 2 * inverseFrequencies.Length; // the rotated width d
        switch (Type)
        {
            case RopeScalingType.Linear:
                return inverseFrequencies.Select(f => f / Factor).ToArray();
            case RopeScalingType.Ntk:
                // (base · factor^(d/(d−2)))^(−2i/d) = base^(−2i/d) · factor^(−2i/(d−2)): pair 0 kept, pair d/2−1 divided by the factor.
                return inverseFrequencies.Select((f, i) => f * Math.Pow(Factor, -2.0 * i / (dim - 2))).ToArray();
            case RopeScalingType.Yarn:
                return Yarn(inverseFrequencies, ropeBase, dim);
        }
        double low = LowFreqFactor!.Value, high = HighFreqFactor!.Value, original = OriginalMaxPositionEmbeddings!.Value;
        double lowFreqWavelength = original / low, highFreqWavelength = original / high;
        return inverseFrequencies.Select(f =>
        {
            double wavelength = 2 * Math.PI / f;
            if (wavelength < highFreqWavelength) return f;          // high frequencies: kept
            if (wavelength > lowFreqWavelength) return f / Factor;   // low frequencies: interpolated
            double smooth = (original / wavelength - low) / (high - low); // in between: blended
            return (1 - smooth) * f / Factor + smooth * f;
        }).ToArray();
    }

    /// <summary>
    /// What cos and sin are multiplied by: YaRN's attention factor (given, or 0.1 · m · ln(factor) + 1 with m = 1, or the ratio
    /// of that for <see cref="Mscale"/> to that for <see cref="MscaleAllDim"/> when both are non-zero); 1 for the other types.
    /// </summary>
    public double AttentionScaling()
    {
        if (Type != RopeScalingType.Yarn) return 1;
        if (AttentionFactor is { } given) return given;
        static double MscaleOf(double scale, double m) => scale <= 1 ? 1 : 0.1 * m * Math.Log(scale) + 1;
        return Mscale is { } m && m != 0 && MscaleAllDim is { } all && all != 0 ? MscaleOf(Factor, m) / MscaleOf(Factor, all) : MscaleOf(Factor, 1);
    }

    private double[] Yarn(double[] inverseFrequencies, double ropeBase, int dim)
    {
        double original = OriginalMaxPositionEmbeddings!.Value;
        // The dimension whose frequency turns `rotations` times over the original context.
        double CorrectionDim(double rotations) => dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(ropeBase));
        double low = CorrectionDim(BetaFast ?? 32), high = CorrectionDim(BetaSlow ?? 1);
        if (Truncate ?? true) (low, high) = (Math.Floor(low), Math.Ceiling(high));
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high) high += 0.001; // as transformers: no division by zero
        return inverseFrequencies.Select((f, i) =>
        {
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1); // 0: extrapolated (kept), 1: interpolated
            double extrapolation = 1 - ramp;
            return f / Factor * (1 - extrapolation) + f * extrapolation;
        }).ToArray();
    }
}
