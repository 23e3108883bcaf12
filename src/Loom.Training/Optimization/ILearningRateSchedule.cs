namespace Loom.Training.Optimization;

/// <summary>A learning rate as a function of training progress.</summary>
public interface ILearningRateSchedule
{
    /// <summary>
    /// The learning rate for the update that follows <paramref name="step"/> completed updates, i.e. the
    /// value to pass to <see cref="IOptimizer.Step"/> when <see cref="IOptimizer.StepCount"/> equals
    /// <paramref name="step"/>. Schedules below are written in n = step + 1, the 1-based number of that update.
    /// </summary>
    /// <param name="step">Completed updates so far; at least 0.</param>
    double At(long step);
}
