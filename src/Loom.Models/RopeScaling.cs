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

    /// <summary>Llama 3 only: the context length the model was pretrained with.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field; returns the options.</summary>
    public RopeScaling Validate()
    {
        if (!Enum.IsDefined(Type)) throw new ArgumentException($"model.rope_scaling.type = {Type} is not a known scaling: use linear or llama3");
        if (!(Factor >= 1)) throw new ArgumentException($"model.rope_scaling.factor = {Factor} must be at least 1");
        if (Type == RopeScalingType.Llama3)
        {
            if (LowFreqFactor is not { } low || !(low > 0)) throw new ArgumentException($"model.rope_scaling.low_freq_factor = {LowFreqFactor?.ToString() ?? "null"} must be positive for llama3 scaling");
            if (HighFreqFactor is not { } high || !(high > low)) throw new ArgumentException($"model.rope_scaling.high_freq_factor = {HighFreqFactor?.ToString() ?? "null"} must be greater than low_freq_factor = {low} for llama3 scaling");
            if (OriginalMaxPositionEmbeddings is not > 0) throw new ArgumentException($"model.rope_scaling.original_max_position_embeddings = {OriginalMaxPositionEmbeddings?.ToString() ?? "null"} must be a positive integer for llama3 scaling");
        }
        else if (LowFreqFactor is not null || HighFreqFactor is not null || OriginalMaxPositionEmbeddings is not null)
        {
            throw new ArgumentException($"model.rope_scaling.type = {Type}: low_freq_factor, high_freq_factor and original_max_position_embeddings belong to llama3 scaling; drop them");
        }
        return this;
    }

    /// <summary>
    /// The scaled inverse frequencies, (Dh/2) values, from the unscaled ones base^(-2i/Dh), as transformers'
    /// <c>_compute_linear_scaling_rope_parameters</c> and <c>_compute_llama3_parameters</c> compute them (in float64).
    /// </summary>
    public double[] Apply(double[] inverseFrequencies)
    {
        ArgumentNullException.ThrowIfNull(inverseFrequencies);
        if (Type == RopeScalingType.Linear) return inverseFrequencies.Select(f => f / Factor).ToArray();
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
}
