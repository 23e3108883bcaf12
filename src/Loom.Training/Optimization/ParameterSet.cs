using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;

namespace Loom.Training.Optimization;

/// <summary>
/// The bookkeeping that every <see cref="IOptimizer"/> here shares: named parameters, their state
/// tensors, the step counter, and the step loop with its scopes.
/// </summary>
internal sealed class ParameterSet : IDisposable
{
    private readonly List<ParameterState> _parameters = new();
    private bool _disposed;

    /// <param name="parameters">Named parameters; names must be non-empty and distinct.</param>
    /// <param name="decays">Decides, from name and parameter, whether weight decay applies.</param>
    public ParameterSet(IEnumerable<(string Name, Parameter Param)> parameters, Func<string, Parameter, bool> decays)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, param) in parameters)
        {
            if (string.IsNullOrEmpty(name))
                throw new ArgumentException("parameter names must be non-empty", nameof(parameters));
            ArgumentNullException.ThrowIfNull(param, $"{nameof(parameters)}[{name}]");
            if (!seen.Add(name))
                throw new ArgumentException($"parameter name '{name}' appears twice", nameof(parameters));
            _parameters.Add(new ParameterState(name, param, decays(name, param)));
        }
    }

    /// <summary>The parameters in the order given.</summary>
    public IReadOnlyList<ParameterState> Parameters => _parameters;

    /// <summary>Updates applied so far.</summary>
    public long StepCount { get; private set; }

    /// <summary>
    /// Increments the step counter, then calls <paramref name="update"/> for every parameter with a
    /// gradient, each in its own dispose scope (so temporaries of one parameter are freed before the
    /// next) and all under no_grad. The update receives the parameter, its gradient and the 1-based step.
    /// </summary>
    public void Step(object owner, double learningRate, Action<ParameterState, torch.Tensor, long> update)
    {
        ObjectDisposedException.ThrowIf(_disposed, owner);
        if (!(learningRate >= 0 && double.IsFinite(learningRate)))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, $"learningRate must be finite and >= 0; got {learningRate}.");
        StepCount++;
        using var noGrad = torch.no_grad();
        foreach (var p in _parameters)
        {
            using var scope = torch.NewDisposeScope();
            var grad = p.Parameter.grad;
            if (grad is null)
                continue;
            update(p, grad, StepCount);
        }
    }

    /// <summary>Sets every gradient to none.</summary>
    public void ZeroGrad(object owner)
    {
        ObjectDisposedException.ThrowIf(_disposed, owner);
        foreach (var p in _parameters)
            p.Parameter.grad = null;
    }

    /// <summary>The live state tensors keyed "&lt;name&gt;.&lt;slot&gt;".</summary>
    public IReadOnlyDictionary<string, torch.Tensor> StateTensors(object owner)
    {
        ObjectDisposedException.ThrowIf(_disposed, owner);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        foreach (var p in _parameters)
            foreach (var (slot, t) in p.Slots)
                result.Add($"{p.Name}.{slot}", t);
        return result;
    }

    /// <summary>Validates every key and shape first, then copies in place and sets the step counter.</summary>
    public void LoadState(object owner, IReadOnlyDictionary<string, torch.Tensor> state, long stepCount)
    {
        ObjectDisposedException.ThrowIf(_disposed, owner);
        ArgumentNullException.ThrowIfNull(state);
        OptionCheck.NonNegative(stepCount, nameof(stepCount));
        var own = StateTensors(owner);
        foreach (var (key, target) in own)
        {
            if (!state.TryGetValue(key, out var source) || source is null)
                throw new ArgumentException($"optimizer state is missing '{key}'", nameof(state));
            if (!source.shape.SequenceEqual(target.shape))
                throw new ArgumentException(
                    $"optimizer state '{key}' has shape [{string.Join(", ", source.shape)}]; expected [{string.Join(", ", target.shape)}]",
                    nameof(state));
        }
        foreach (var key in state.Keys)
            if (!own.ContainsKey(key))
                throw new ArgumentException($"unexpected optimizer state key '{key}'", nameof(state));

        using var noGrad = torch.no_grad();
        foreach (var (key, target) in own)
            target.copy_(state[key]);
        StepCount = stepCount;
    }

    /// <summary>Frees every state tensor; the parameters belong to the caller and stay.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (var p in _parameters)
            p.Dispose();
    }
}
