using TorchSharp;

namespace Loom.Data;

/// <summary>
/// One training batch on the CPU: int64 (B, T) inputs and targets; for packed rows also segment ids,
/// positions and loss weights (see <see cref="FeatureConverters.DecoderRow"/>). Disposing it disposes the tensors.
/// </summary>
/// <param name="Inputs">Decoder inputs.</param>
/// <param name="Targets">Decoder targets.</param>
/// <param name="SegmentIds">Segment ids (0 in padding), or null for rows of one unbroken stream.</param>
/// <param name="Positions">Positions within segments, or null.</param>
/// <param name="LossWeights">1 where a target counts, or null where all do.</param>
public sealed record TrainingBatch(
    torch.Tensor Inputs, torch.Tensor Targets, torch.Tensor? SegmentIds = null, torch.Tensor? Positions = null, torch.Tensor? LossWeights = null)
    : IDisposable
{
    /// <summary>Whether the rows are packed examples (with segment ids, positions and loss weights).</summary>
    public bool IsPacked => SegmentIds is not null;

    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        Inputs.Dispose();
        Targets.Dispose();
        SegmentIds?.Dispose();
        Positions?.Dispose();
        LossWeights?.Dispose();
    }
}

/// <summary>Training batches that are a pure function of (seed, step): what the trainer draws from.</summary>
public interface ITrainingBatches
{
    /// <summary>B: rows per batch.</summary>
    int BatchSize { get; }

    /// <summary>T: tokens per row.</summary>
    int SequenceLength { get; }

    /// <summary>Makes the batch for <paramref name="step"/> on the CPU; its tensors are moved to the caller's dispose scope.</summary>
    TrainingBatch GetBatch(long step);
}
