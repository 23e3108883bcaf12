namespace Loom.Data.Tasks;

/// <summary>A task or mixture and its sampling rate inside a mixture.</summary>
/// <param name="Name">Registry name of a task or of another mixture.</param>
/// <param name="Rate">Relative rate (positive); rates are normalised across the mixture. Ignored unless the mixture's rates are explicit.</param>
public sealed record MixtureComponent(string Name, double Rate = 1.0);

/// <summary>How a mixture weighs its components (seqio's explicit rates, <c>rate_num_examples</c> and size-based rates).</summary>
public enum MixtureRateKind
{
    /// <summary>Each component's <see cref="MixtureComponent.Rate"/>.</summary>
    Explicit,

    /// <summary>The number of training examples of each component, capped at <see cref="Mixture.MaximumExamples"/> when set.</summary>
    Examples,

    /// <summary>The number of training tokens of each component (all token features counted).</summary>
    Size,
}

/// <summary>The size of a task's training split, for rates by example count or size.</summary>
/// <param name="Examples">Examples after preprocessing.</param>
/// <param name="Tokens">Tokens over all token features.</param>
public readonly record struct TaskSize(long Examples, long Tokens);

/// <summary>Tasks (or nested mixtures) sampled with rates (seqio's Mixture).</summary>
public sealed class Mixture
{
    /// <summary>Creates a mixture.</summary>
    /// <param name="name">Registry name: lowercase letters, digits and '_'.</param>
    /// <param name="components">Tasks or mixtures, each listed once.</param>
    /// <param name="rateBy">How components are weighed.</param>
    /// <param name="maximumExamples">With <see cref="MixtureRateKind.Examples"/>, the cap on a component's count (seqio's <c>maximum</c>); positive.</param>
    /// <param name="description">One line saying what the mixture is.</param>
    /// <exception cref="ArgumentException">No components, a repeated component, a rate that is not positive, or a bad cap.</exception>
    public Mixture(string name, IReadOnlyList<MixtureComponent> components, MixtureRateKind rateBy = MixtureRateKind.Explicit, long? maximumExamples = null,
        string description = "")
    {
        Description = description ?? "";
        Name = TaskRegistry.CheckName(name);
        ArgumentNullException.ThrowIfNull(components);
        if (components.Count == 0) throw new ArgumentException($"mixture '{name}' has no components");
        foreach (var c in components)
            if (!(c.Rate > 0) || double.IsInfinity(c.Rate))
                throw new ArgumentException($"mixture '{name}': rate of '{c.Name}' is {c.Rate}; rates must be positive");
        if (components.Select(c => c.Name).Distinct(StringComparer.Ordinal).Count() != components.Count)
            throw new ArgumentException($"mixture '{name}' lists a component twice");
        if (!Enum.IsDefined(rateBy)) throw new ArgumentException($"mixture '{name}': unknown rate kind {rateBy}");
        if (maximumExamples is <= 0) throw new ArgumentException($"mixture '{name}': maximum examples = {maximumExamples} must be positive");
        if (maximumExamples is not null && rateBy != MixtureRateKind.Examples)
            throw new ArgumentException($"mixture '{name}': a maximum example count applies only to rates by examples");
        Components = components;
        RateBy = rateBy;
        MaximumExamples = maximumExamples;
    }

    /// <summary>The mixture's registry name.</summary>
    public string Name { get; }

    /// <summary>One line saying what the mixture is.</summary>
    public string Description { get; }

    /// <summary>The components and their rates as given.</summary>
    public IReadOnlyList<MixtureComponent> Components { get; }

    /// <summary>How components are weighed.</summary>
    public MixtureRateKind RateBy { get; }

    /// <summary>The cap on a component's example count when rates go by examples; null for none.</summary>
    public long? MaximumExamples { get; }
}
