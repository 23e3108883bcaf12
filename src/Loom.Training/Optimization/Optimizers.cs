using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>Builds an optimizer from its configuration name.</summary>
public static class Optimizers
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["adamw", "adafactor"];

    /// <summary>
    /// Creates <c>"adamw"</c> (<see cref="AdamW"/>) or <c>"adafactor"</c> (<see cref="Adafactor"/>) over
    /// <paramref name="parameters"/>; names are case-insensitive. The options for the optimizer not chosen are ignored.
    /// </summary>
    /// <param name="name">The optimizer name.</param>
    /// <param name="parameters">Named parameters, e.g. <c>module.named_parameters()</c>.</param>
    /// <param name="adamW">AdamW options; null takes the defaults.</param>
    /// <param name="adafactor">Adafactor options; null takes the defaults.</param>
    /// <exception cref="ArgumentException">The name is unknown; the message lists the valid ones.</exception>
    public static IOptimizer Create(
        string name, IEnumerable<(string Name, Parameter Param)> parameters, AdamWOptions? adamW = null, AdafactorOptions? adafactor = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "adamw" => new AdamW(parameters, adamW),
            "adafactor" => new Adafactor(parameters, adafactor),
            _ => throw new ArgumentException($"unknown optimizer '{name}': valid names are {string.Join(", ", Names)}", nameof(name)),
        };
    }
}
