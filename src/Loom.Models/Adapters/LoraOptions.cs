namespace Loom.Models.Adapters;

/// <summary>
/// LoRA (Hu et al., 2021) as the config's <c>lora</c> section sets it: each targeted dense kernel W gains a trainable
/// low-rank update (alpha / rank) · B A, with A (rank × in) and B (out × rank), while W stays frozen.
/// </summary>
public sealed record LoraOptions
{
    /// <summary>The rank r of the update (PEFT's <c>r</c>).</summary>
    public int Rank { get; init; } = 8;

    /// <summary>The update is scaled by alpha / rank (PEFT's <c>lora_alpha</c>).</summary>
    public double Alpha { get; init; } = 16;

    /// <summary>Dropout on the adapter's input while training (PEFT's <c>lora_dropout</c>); 0 disables it.</summary>
    public double Dropout { get; init; }

    /// <summary>
    /// The kernels to adapt, by Loom's names (wq, wk, wv, wo, gate, up, down) or PEFT's Llama names (q_proj, k_proj,
    /// v_proj, o_proj, gate_proj, up_proj, down_proj). By default the query and value projections, as in the LoRA paper and
    /// PEFT's default for Llama: at rank 8 that is about 1.3% of the tiny preset's parameters (all four projections, 2.5%).
    /// </summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["wq", "wv"];

    /// <summary>Loom's names of the kernels LoRA can adapt: the attention projections, then the MLP's.</summary>
    public static IReadOnlyList<string> ModuleNames { get; } = ["wq", "wk", "wv", "wo", "gate", "up", "down"];

    /// <summary>The attention projections among <see cref="ModuleNames"/> (fields of an attention layer).</summary>
    internal static IReadOnlySet<string> AttentionModules { get; } = new HashSet<string>(["wq", "wk", "wv", "wo"], StringComparer.Ordinal);

    /// <summary>PEFT's (Hugging Face Llama) names of the same kernels, each with Loom's name.</summary>
    public static IReadOnlyDictionary<string, string> PeftAliases { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["q_proj"] = "wq", ["k_proj"] = "wk", ["v_proj"] = "wv", ["o_proj"] = "wo",
        ["gate_proj"] = "gate", ["up_proj"] = "up", ["down_proj"] = "down",
    };

    /// <summary>The scale alpha / rank applied to B A.</summary>
    public double Scaling() => Alpha / Rank;

    /// <summary>Loom's names of the targeted kernels (aliases resolved, duplicates dropped, in <see cref="ModuleNames"/> order).</summary>
    /// <exception cref="ArgumentException">A name is not one LoRA can adapt.</exception>
    public IReadOnlyList<string> CanonicalTargets()
    {
        var names = TargetModules.Select(Canonical).ToHashSet(StringComparer.Ordinal);
        return ModuleNames.Where(names.Contains).ToList();
    }

    /// <summary>Loom's name of a kernel given by Loom's or PEFT's name.</summary>
    /// <exception cref="ArgumentException">The name is not one LoRA can adapt; the message lists those it can.</exception>
    public static string Canonical(string name)
    {
        if (name is not null && ModuleNames.Contains(name, StringComparer.Ordinal)) return name;
        if (name is not null && PeftAliases.TryGetValue(name, out var loom)) return loom;
        throw new ArgumentException($"lora.target_modules: '{name}' is not a module LoRA can adapt: use {string.Join(", ", ModuleNames)} (or PEFT's {string.Join(", ", PeftAliases.Keys)})");
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public LoraOptions Validate()
    {
        if (Rank <= 0) throw new ArgumentException($"lora.rank = {Rank} must be positive (8 or 16 are usual)");
        if (!(Alpha > 0) || !double.IsFinite(Alpha)) throw new ArgumentException($"lora.alpha = {Alpha} must be a positive number (the update is scaled by alpha / rank)");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"lora.dropout = {Dropout} must be in [0, 1)");
        if (TargetModules is null || TargetModules.Count == 0)
            throw new ArgumentException($"lora.target_modules is empty: list the kernels to adapt, e.g. [\"wq\", \"wv\"] (any of {string.Join(", ", ModuleNames)})");
        CanonicalTargets();
        return this;
    }
}
