namespace Loom.Data.Tasks;

/// <summary>A task or mixture and its sampling rate inside a mixture.</summary>
/// <param name="Name">Registry name of a task or of another mixture.</param>
/// <param name="Rate">Relative rate (positive); rates are normalised across the mixture.</param>
public sealed record MixtureComponent(string Name, double Rate);

/// <summary>Tasks (or nested mixtures) sampled with rates (seqio's Mixture).</summary>
public sealed class Mixture
{
    /// <summary>Creates a mixture; every rate must be positive and finite.</summary>
    public Mixture(string name, IReadOnlyList<MixtureComponent> components)
    {
        Name = TaskRegistry.CheckName(name);
        ArgumentNullException.ThrowIfNull(components);
        if (components.Count == 0) throw new ArgumentException($"mixture '{name}' has no components");
        foreach (var c in components)
            if (!(c.Rate > 0) || double.IsInfinity(c.Rate))
                throw new ArgumentException($"mixture '{name}': rate of '{c.Name}' is {c.Rate}; rates must be positive");
        if (components.Select(c => c.Name).Distinct(StringComparer.Ordinal).Count() != components.Count)
            throw new ArgumentException($"mixture '{name}' lists a component twice");
        Components = components;
    }

    /// <summary>The mixture's registry name.</summary>
    public string Name { get; }

    /// <summary>The components and their rates as given.</summary>
    public IReadOnlyList<MixtureComponent> Components { get; }
}
