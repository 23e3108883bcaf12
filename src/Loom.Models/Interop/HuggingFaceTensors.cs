using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// The tensors of a Hugging Face folder as an architecture's key map takes them: each by name with the shape the
/// config implies, so that a missing tensor, a tensor of another shape and (afterwards) a tensor nothing took are each
/// an error naming the tensor.
/// </summary>
public sealed class HuggingFaceTensors
{
    private readonly IReadOnlyDictionary<string, Tensor> tensors;
    private readonly HashSet<string> taken = new(StringComparer.Ordinal);

    /// <summary>Wraps the tensors read from <paramref name="source"/> (a folder, for error messages).</summary>
    public HuggingFaceTensors(IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        this.tensors = tensors ?? throw new ArgumentNullException(nameof(tensors));
        Source = source;
    }

    /// <summary>Where the tensors came from.</summary>
    public string Source { get; }

    /// <summary>Whether a tensor of this name is there.</summary>
    public bool Contains(string name) => tensors.ContainsKey(name);

    /// <summary>The tensor <paramref name="name"/>, which must have <paramref name="shape"/>.</summary>
    /// <exception cref="InvalidDataException">It is missing or of another shape; the message names it.</exception>
    public Tensor Take(string name, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (!tensors.TryGetValue(name, out var tensor))
            throw new InvalidDataException($"{Source}: missing tensor '{name}' (config.json implies it)");
        if (!tensor.shape.SequenceEqual(shape))
            throw new InvalidDataException($"{Source}: tensor '{name}' has shape [{string.Join(", ", tensor.shape)}], config.json implies [{string.Join(", ", shape)}]");
        taken.Add(name);
        return tensor;
    }

    /// <summary>
    /// Takes every tensor a one-to-one key map names, each with its shape: Loom's state dict by Loom name. Extra
    /// steps (split or stacked tensors) add to the returned dictionary.
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor is missing or of another shape; the message names it.</exception>
    public Dictionary<string, Tensor> TakeAll(IEnumerable<(string Hf, string Loom, long[] Shape)> keyMap)
    {
        ArgumentNullException.ThrowIfNull(keyMap);
        return keyMap.ToDictionary(m => m.Loom, m => Take(m.Hf, m.Shape), StringComparer.Ordinal);
    }

    /// <summary>Loom's state dict under a one-to-one key map's Hugging Face names (the export direction of <see cref="TakeAll"/>).</summary>
    public static Dictionary<string, Tensor> Rename(IEnumerable<(string Hf, string Loom, long[] Shape)> keyMap, IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(keyMap);
        ArgumentNullException.ThrowIfNull(state);
        return keyMap.ToDictionary(m => m.Hf, m => state[m.Loom], StringComparer.Ordinal);
    }

    /// <summary>Marks every tensor that <paramref name="ignored"/> accepts as taken (buffers the model recomputes).</summary>
    public void Ignore(Func<string, bool> ignored)
    {
        ArgumentNullException.ThrowIfNull(ignored);
        foreach (var name in tensors.Keys.Where(ignored)) taken.Add(name);
    }

    /// <summary>The tensors nothing has taken, in name order.</summary>
    public IReadOnlyList<string> Remaining => tensors.Keys.Where(k => !taken.Contains(k)).Order(StringComparer.Ordinal).ToList();
}
