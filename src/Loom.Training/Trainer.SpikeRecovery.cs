using Loom.Training.Metrics;
using Loom.Training.Recovery;
using static TorchSharp.torch;

namespace Loom.Training;

// Loss-spike recovery (training.spike_recovery): what the loop in Trainer.Run calls when the
// LossSpikeMonitor reports a bad update. Kept apart from the step loop so that the loop reads as before.
public sealed partial class Trainer
{
    /// <summary>
    /// Writes a checkpoint of the state the run starts from, so that a spike before the first periodic
    /// checkpoint has somewhere to roll back to; returns its folder.
    /// </summary>
    private string SaveRollbackPoint() =>
        TrainingCheckpoint.Save(RunDirectory, Model, optimizer, random, State, config, data.VocabularySpec, config.Training.KeepCheckpoints);

    /// <summary>
    /// Restores <paramref name="checkpoint"/> (the newest one written after a clean check), moves the data
    /// position past the batches from it through the spike plus training.spike_recovery.skip_batches, logs
    /// the rollback, clears the interval's sums and re-saves the checkpoint with the new data position (so a
    /// crash before the next checkpoint does not replay the bad batches); returns that checkpoint's folder.
    /// </summary>
    /// <exception cref="TrainingDivergedException">The run has already rolled back max_rollbacks times.</exception>
    private string RollBack(LossSpike spike, string checkpoint, double lr, Tensor lossSum, Tensor zLossSum, AuxiliarySums auxiliary)
    {
        var t = config.Training;
        var options = t.SpikeRecovery;
        var e = new MetricEvent(spike.Step, MetricEvent.TrainSplit, spike.Loss)
        {
            LearningRate = lr, GradNorm = spike.GradNorm, ElapsedSeconds = State.ElapsedSeconds, Event = MetricEvent.SpikeRollbackEvent, Reason = spike.Reason,
        };
        if (State.Rollbacks >= options.MaxRollbacks)
        {
            sink.Write(e);
            sink.Flush();
            throw new TrainingDivergedException(
                $"training diverged: loss spike at step {spike.Step} ({spike.Reason}) after {State.Rollbacks} rollbacks (training.spike_recovery.max_rollbacks = {options.MaxRollbacks}): " +
                $"lower training.learning_rate or training.clip_norm, or raise max_rollbacks, and resume from {checkpoint}", spike);
        }

        // The micro-batch position right after the spike's update: every update since then consumed gradient_accumulation.
        long afterSpike = State.MicroBatchesConsumed - (State.Step - spike.Step) * t.GradientAccumulation;
        long rollbacks = State.Rollbacks + 1;
        double elapsed = State.ElapsedSeconds;
        var restored = TrainingCheckpoint.Restore(checkpoint, Model, optimizer, random);
        long position = afterSpike + options.SkipBatches * t.GradientAccumulation;
        State = restored with { MicroBatchesConsumed = position, Rollbacks = (int)rollbacks, ElapsedSeconds = elapsed };

        var rollback = new SpikeRollback(spike, checkpoint, State.Step, position - restored.MicroBatchesConsumed, State.Rollbacks, options.MaxRollbacks);
        sink.Write(e with { RolledBackTo = rollback.RestoredStep, SkippedMicroBatches = rollback.SkippedMicroBatches });
        Observer?.OnRollback(rollback);

        using (var scope = NewDisposeScope())
        {
            lossSum.zero_();
            zLossSum.zero_();
            auxiliary.Reset();
        }
        return TrainingCheckpoint.Save(RunDirectory, Model, optimizer, random, State, config, data.VocabularySpec, t.KeepCheckpoints);
    }
}
