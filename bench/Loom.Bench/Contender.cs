using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>Phases of one training step, in order.</summary>
internal enum Phase
{
    ZeroGrad,
    Forward,
    Backward,
    Clip,
    Optimizer,
}

/// <summary>Wall time of one step and of its phases, in milliseconds, and the step's loss.</summary>
internal sealed record StepTiming(double TotalMs, double[] PhaseMs, float Loss);

/// <summary>One side of the comparison: a model, its optimizer, and one full training step.</summary>
internal interface ITrainStepContender : IDisposable
{
    string Name { get; }

    long ParameterCount { get; }

    /// <summary>Loss of one batch without a step, for checking that both contenders compute the same function.</summary>
    float EvalLoss(Tensor inputs, Tensor targets);

    /// <summary>zero grad, loss, backward, clip, optimizer step; timed by <paramref name="clock"/>.</summary>
    StepTiming Step(Tensor inputs, Tensor targets, PhaseClock clock);
}

/// <summary>
/// Stopwatch over a step's phases. When <see cref="syncPhases"/> is set the device is synchronised at
/// every phase boundary so that each phase is charged its own kernels; that is free on the CPU (libtorch
/// CPU ops are synchronous) but on CUDA it removes host/device overlap, so it is opt-in there.
/// </summary>
internal sealed class PhaseClock(Device device, bool syncPhases)
{
    private readonly Stopwatch watch = new();
    private readonly double[] phases = new double[Enum.GetValues<Phase>().Length];
    private double last;

    public void Start()
    {
        Sync();
        Array.Clear(phases);
        last = 0;
        watch.Restart();
    }

    /// <summary>Charges the time since the previous lap to <paramref name="phase"/>.</summary>
    public void Lap(Phase phase)
    {
        if (syncPhases) Sync();
        double now = watch.Elapsed.TotalMilliseconds;
        phases[(int)phase] += now - last;
        last = now;
    }

    /// <summary>Ends the step; the caller has already read the loss back, which waits for the device.</summary>
    public StepTiming Stop(float loss)
    {
        Sync();
        double total = watch.Elapsed.TotalMilliseconds;
        // Whatever ran after the last lap (reading the loss back) belongs to the optimizer phase: on CUDA
        // without phase syncs that is where the queued kernels of the whole step are waited for.
        phases[(int)Phase.Optimizer] += total - last;
        return new StepTiming(total, (double[])phases.Clone(), loss);
    }

    private void Sync()
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }
}
