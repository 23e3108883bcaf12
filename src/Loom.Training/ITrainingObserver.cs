using Loom.Training.Metrics;
using Loom.Training.Recovery;

namespace Loom.Training;

/// <summary>Receives a run's progress (the console progress bar implements it). Called on the training thread.</summary>
public interface ITrainingObserver
{
    /// <summary>Called once before the first update, with the step the run starts from and the last step.</summary>
    void OnStart(long startStep, long totalSteps);

    /// <summary>Called after every update; must not block (no host sync happens here).</summary>
    void OnStep(long step);

    /// <summary>Called at each logging point with the training metrics.</summary>
    void OnTrainMetrics(MetricEvent metrics);

    /// <summary>Called after each held-out evaluation.</summary>
    void OnValidationMetrics(MetricEvent metrics);

    /// <summary>Called after a checkpoint is written.</summary>
    void OnCheckpoint(string directory);

    /// <summary>Called after a loss spike made the trainer roll back to a checkpoint and skip data (training.spike_recovery).</summary>
    void OnRollback(SpikeRollback rollback)
    {
    }
}
