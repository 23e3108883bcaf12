namespace Loom.Training.Recovery;

/// <summary>
/// Training kept spiking after training.spike_recovery.max_rollbacks rollbacks: the message names the
/// spike, the checkpoint to resume from and what to change.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception for <paramref name="spike"/>.</summary>
    public TrainingDivergedException(string message, LossSpike spike) : base(message) => Spike = spike;

    /// <summary>The spike that exhausted the rollbacks.</summary>
    public LossSpike Spike { get; }
}

/// <summary>What a rollback did, as the trainer reports it to observers and logs it in metrics.jsonl.</summary>
/// <param name="Spike">The bad update found.</param>
/// <param name="Checkpoint">The checkpoint restored.</param>
/// <param name="RestoredStep">The step training continues from.</param>
/// <param name="SkippedMicroBatches">Micro-batches skipped: from the checkpoint's data position through the spike, plus skip_batches.</param>
/// <param name="Rollback">This run's rollback count including this one.</param>
/// <param name="MaxRollbacks">training.spike_recovery.max_rollbacks.</param>
public sealed record SpikeRollback(LossSpike Spike, string Checkpoint, long RestoredStep, long SkippedMicroBatches, int Rollback, int MaxRollbacks)
{
    /// <summary>One line for the console.</summary>
    public override string ToString() => FormattableString.Invariant(
        $"loss spike at step {Spike.Step}: {Spike.Reason}; rolled back to step {RestoredStep} ({Checkpoint}) and skipped {SkippedMicroBatches} micro-batches (rollback {Rollback} of at most {MaxRollbacks})");
}
