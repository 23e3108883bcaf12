using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>One named parameter, its weight-decay decision and its state tensors by slot name.</summary>
internal sealed class ParameterState
{
    private readonly List<(string Slot, torch.Tensor Tensor)> _slots = new();

    public ParameterState(string name, Parameter parameter, bool decays)
    {
        Name = name;
        Parameter = parameter;
        Decays = decays;
    }

    /// <summary>The name the parameter was given (module.named_parameters()).</summary>
    public string Name { get; }

    /// <summary>The parameter itself.</summary>
    public Parameter Parameter { get; }

    /// <summary>Whether weight decay applies to this parameter.</summary>
    public bool Decays { get; }

    /// <summary>The state slots in creation order.</summary>
    public IReadOnlyList<(string Slot, torch.Tensor Tensor)> Slots => _slots;

    /// <summary>The state tensor in slot <paramref name="slot"/>.</summary>
    public torch.Tensor this[string slot] =>
        _slots.First(s => s.Slot == slot).Tensor;

    /// <summary>
    /// Adds a zero-filled state slot on the parameter's device. The tensor is detached from any dispose
    /// scope because it must outlive every scope of the caller; <see cref="Dispose"/> frees it.
    /// </summary>
    public torch.Tensor AddZeros(string slot, long[] shape)
    {
        var t = torch.zeros(shape, dtype: Parameter.dtype, device: Parameter.device).DetachFromDisposeScope();
        _slots.Add((slot, t));
        return t;
    }

    /// <summary>Frees the state tensors.</summary>
    public void Dispose()
    {
        foreach (var (_, t) in _slots)
            t.Dispose();
        _slots.Clear();
    }
}
