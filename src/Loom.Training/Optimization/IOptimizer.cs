using TorchSharp;

namespace Loom.Training.Optimization;

/// <summary>
/// A first-order optimizer over a fixed, named set of parameters. The learning rate is passed to every
/// <see cref="Step"/> so that the schedule lives outside the optimizer and a resumed run needs no
/// schedule state beyond <see cref="StepCount"/>.
/// </summary>
/// <remarks>
/// State tensors are created when the optimizer is constructed, on the device and with the dtype of
/// their parameter, and are owned by the optimizer (no dispose scope owns them); <see cref="IDisposable.Dispose"/>
/// frees them.
/// </remarks>
public interface IOptimizer : IDisposable
{
    /// <summary>
    /// Number of <see cref="Step"/> calls applied so far (including steps in which no parameter had a
    /// gradient). During a step the update uses the 1-based step number <c>StepCount</c> after the increment.
    /// </summary>
    long StepCount { get; }

    /// <summary>
    /// Increments <see cref="StepCount"/> and applies one update to every parameter whose <c>.grad</c> is
    /// set, under <c>torch.no_grad()</c>. Parameters without a gradient are left untouched, and so is
    /// their state. Reads no value back to the host.
    /// </summary>
    /// <param name="learningRate">The learning rate for this update; finite and at least 0.</param>
    void Step(double learningRate);

    /// <summary>Clears the gradient of every parameter (sets <c>.grad</c> to none, as PyTorch's default does).</summary>
    void ZeroGrad();

    /// <summary>
    /// Every state tensor, keyed <c>"&lt;parameter name&gt;.&lt;slot&gt;"</c> (for example
    /// <c>"blocks.0.attn.wq.weight.exp_avg"</c>), in parameter order. The tensors are the optimizer's live
    /// state: read or copy them (for a checkpoint) before the next <see cref="Step"/>, and do not dispose them.
    /// </summary>
    IReadOnlyDictionary<string, torch.Tensor> StateTensors();

    /// <summary>
    /// Copies <paramref name="state"/> into the optimizer's state tensors in place (across devices and
    /// dtypes where needed) and sets <see cref="StepCount"/>. The keys must be exactly those of
    /// <see cref="StateTensors"/> and every shape must match; nothing is copied unless all do.
    /// </summary>
    /// <param name="state">State tensors keyed as <see cref="StateTensors"/> names them.</param>
    /// <param name="stepCount">The <see cref="StepCount"/> saved with the state; at least 0.</param>
    /// <exception cref="ArgumentException">A key is missing or unexpected, or a shape differs.</exception>
    void LoadState(IReadOnlyDictionary<string, torch.Tensor> state, long stepCount);
}
