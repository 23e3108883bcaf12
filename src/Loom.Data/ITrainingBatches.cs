namespace Loom.Data;

/// <summary>Training batches that are a pure function of (seed, step): what the trainer draws from.</summary>
public interface ITrainingBatches
{
    /// <summary>B: rows per batch.</summary>
    int BatchSize { get; }

    /// <summary>T: tokens per row.</summary>
    int SequenceLength { get; }

    /// <summary>Makes the batch for <paramref name="step"/> on the CPU; its tensors are moved to the caller's dispose scope.</summary>
    FeatureBatch GetBatch(long step);
}
