namespace Loom.Training.Recovery;

/// <summary>
/// Automatic loss-spike recovery (config section <c>training.spike_recovery</c>). PaLM (§5.1) met loss
/// spikes about 20 times in its largest run and handled them by hand: it restarted from a checkpoint
/// about 100 steps before the spike and skipped 200–500 data batches. The trainer does the same by
/// itself: it watches every update's loss and gradient norm, and when one is not finite, or the loss
/// exceeds <see cref="Factor"/> times the median of the last <see cref="Window"/> updates, it restores the
/// last good checkpoint (weights, optimizer state, RNG, trainer state), moves the data position past the
/// batches from that checkpoint through the spike plus <see cref="SkipBatches"/> more, and continues.
/// </summary>
/// <remarks>
/// Detection runs on the device and is read back only where the trainer already synchronises (logging,
/// evaluation and checkpoint points), so a spike is noticed up to training.log_every updates late; the
/// updates in between are discarded by the rollback. No checkpoint is written past an undetected spike,
/// because the flag is read before every checkpoint.
/// </remarks>
public sealed record SpikeRecoveryOptions
{
    /// <summary>Whether to detect spikes and roll back (off by default).</summary>
    public bool Enabled { get; init; }

    /// <summary>k: an update's loss above k × the median of the recent window is a spike (must exceed 1).</summary>
    public double Factor { get; init; } = 2.0;

    /// <summary>Updates whose losses make the recent median; the ratio test starts once that many are seen (after a rollback, again).</summary>
    public int Window { get; init; } = 50;

    /// <summary>
    /// Training batches (each training.batch_size × training.gradient_accumulation rows) skipped beyond those
    /// from the restored checkpoint through the spike, so that the data after a rollback differs.
    /// </summary>
    public long SkipBatches { get; init; } = 100;

    /// <summary>Rollbacks allowed in a run (counted across resumes); one more spike stops training with an error.</summary>
    public int MaxRollbacks { get; init; } = 3;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and how to fix it.</summary>
    public SpikeRecoveryOptions Validate()
    {
        Check(double.IsFinite(Factor) && Factor > 1, "factor", Factor, "must be a number greater than 1 (a loss above factor × the recent median is a spike; 2 is a good start)");
        Check(Window >= 1, "window", Window, "must be at least 1 (updates in the recent median)");
        Check(SkipBatches >= 0, "skip_batches", SkipBatches, "must be 0 or more");
        Check(MaxRollbacks >= 1, "max_rollbacks", MaxRollbacks, "must be at least 1 (set training.spike_recovery.enabled = false to turn recovery off)");
        return this;
    }

    private static void Check(bool ok, string name, object value, string rule)
    {
        if (!ok) throw new ArgumentException(FormattableString.Invariant($"training.spike_recovery.{name} = {value} {rule}"));
    }
}
