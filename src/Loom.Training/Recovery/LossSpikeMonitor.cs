using System.Globalization;
using static TorchSharp.torch;

namespace Loom.Training.Recovery;

/// <summary>A loss spike the <see cref="LossSpikeMonitor"/> found: the first bad update since it was last reset.</summary>
/// <param name="Step">The update (trainer step after it) whose loss or gradient norm was bad.</param>
/// <param name="Loss">Its mean training loss, nats/token (may be NaN or infinite).</param>
/// <param name="GradNorm">Its global gradient norm before clipping (may be NaN or infinite).</param>
/// <param name="Median">The median loss of the recent window it was compared with; null when the window was not yet full.</param>
/// <param name="Factor">The configured factor k.</param>
public sealed record LossSpike(long Step, double Loss, double GradNorm, double? Median, double Factor)
{
    /// <summary>Why the update counts as a spike, in words.</summary>
    public string Reason =>
        !double.IsFinite(Loss) ? $"non-finite loss ({Format(Loss)})"
        : !double.IsFinite(GradNorm) ? $"non-finite gradient norm ({Format(GradNorm)})"
        : $"loss {Format(Loss)} > {Format(Factor)} × the recent median {Format(Median ?? double.NaN)}";

    private static string Format(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}

/// <summary>
/// Watches every update's loss and gradient norm on the device, without a host sync per step: each
/// <see cref="Observe"/> queues a few element-wise kernels on one-element tensors (plus a median over
/// the window) that set a sticky flag and record the first bad update; <see cref="Detect"/> reads them
/// back, once, where the trainer synchronises anyway. A bad update has a non-finite loss or gradient norm,
/// or, once <see cref="SpikeRecoveryOptions.Window"/> updates have been seen, a loss above
/// <see cref="SpikeRecoveryOptions.Factor"/> × their median.
/// </summary>
/// <remarks>
/// Cost: about ten kernel launches on one-element tensors and a median over the window per update, against
/// the hundreds a Transformer step launches; on the CPU it is unmeasurable, on a launch-bound GPU step of a
/// tiny model well under 1%. One extra read-back (five numbers) per logging point.
/// </remarks>
public sealed class LossSpikeMonitor : IDisposable
{
    private readonly SpikeRecoveryOptions options;
    private readonly Tensor before;      // (1) float32: the interval's loss sum before the update
    private readonly Tensor history;     // (W) float32: recent losses, a ring
    private readonly Tensor found;       // (1) bool: a bad update since the last reset
    private readonly Tensor spikeStep;   // (1) int64: the first bad update's step
    private readonly Tensor spikeValues; // (3) float32: its loss, gradient norm and the median it was compared with
    private long observed;

    /// <summary>Allocates the monitor's device state on <paramref name="device"/>.</summary>
    public LossSpikeMonitor(SpikeRecoveryOptions options, Device device)
    {
        this.options = (options ?? throw new ArgumentNullException(nameof(options))).Validate();
        before = zeros(1, float32, device);
        history = zeros(options.Window, float32, device);
        found = zeros(1, @bool, device);
        spikeStep = full(1, -1L, int64, device);
        spikeValues = full(3, float.NaN, float32, device);
    }

    /// <summary>Notes the running loss sum before an update (call right before it).</summary>
    /// <param name="lossSum">The trainer's device-side loss sum of the logging interval, (1).</param>
    public void BeginStep(Tensor lossSum)
    {
        ArgumentNullException.ThrowIfNull(lossSum);
        using var scope = NewDisposeScope();
        before.copy_(lossSum);
    }

    /// <summary>Checks the update that just ran (queued on the device; nothing is read back).</summary>
    /// <param name="step">The trainer's step after the update.</param>
    /// <param name="lossSum">The loss sum after the update, (1): its difference from <see cref="BeginStep"/>'s is the update's loss.</param>
    /// <param name="gradNorm">The update's gradient norm before clipping, (1).</param>
    public void Observe(long step, Tensor lossSum, Tensor gradNorm)
    {
        ArgumentNullException.ThrowIfNull(lossSum);
        ArgumentNullException.ThrowIfNull(gradNorm);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var loss = lossSum - before;                                                // (1)
        var bad = loss.isfinite().logical_not().logical_or(gradNorm.isfinite().logical_not()); // (1)
        var median = full(1, float.NaN, float32, loss.device);                     // (1)
        if (observed >= options.Window)
        {
            median = history.median().reshape(1);
            bad = bad.logical_or(loss.gt(median * options.Factor));
        }
        var first = bad.logical_and(found.logical_not());                          // (1)
        found.logical_or_(bad);
        spikeStep.masked_fill_(first, step);
        spikeValues.copy_(where(first, cat([loss, gradNorm.to(float32), median]), spikeValues));
        history.narrow(0, observed % options.Window, 1).copy_(loss);
        observed++;
    }

    /// <summary>Reads the flag back (a host sync): the first bad update since the last <see cref="Reset"/>, or null.</summary>
    public LossSpike? Detect()
    {
        using var scope = NewDisposeScope();
        var values = cat([found.to(float64), spikeStep.to(float64), spikeValues.to(float64)]).cpu().data<double>().ToArray();
        if (values[0] == 0) return null;
        return new LossSpike((long)values[1], values[2], values[3], double.IsNaN(values[4]) ? null : values[4], options.Factor);
    }

    /// <summary>Forgets the flag and the recent losses (after a rollback: the window refills before the ratio test resumes).</summary>
    public void Reset()
    {
        using var scope = NewDisposeScope();
        found.zero_();
        spikeStep.fill_(-1L);
        spikeValues.fill_(float.NaN);
        history.zero_();
        observed = 0;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        before.Dispose();
        history.Dispose();
        found.Dispose();
        spikeStep.Dispose();
        spikeValues.Dispose();
    }
}
