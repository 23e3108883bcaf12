using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>The weight-decay selection that both optimizers' options express.</summary>
internal static class WeightDecayRule
{
    /// <summary>Whether a parameter is decayed: not excluded by name, and a matrix where only matrices decay.</summary>
    public static bool Applies(bool onlyMatrices, Func<string, bool>? exclude, string name, Parameter parameter) =>
        (!onlyMatrices || parameter.dim() >= 2) && !(exclude?.Invoke(name) ?? false);
}
