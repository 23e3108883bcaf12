using Loom.Data.Images;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training.Evaluation;

/// <summary>Loss and accuracy of an image classifier over held-out images.</summary>
/// <param name="Loss">Mean cross-entropy per image, in nats.</param>
/// <param name="Accuracy">Fraction of images whose highest logit is their class.</param>
/// <param name="Images">Images scored.</param>
public sealed record ImageEvaluationResult(double Loss, double Accuracy, long Images);

/// <summary>Scores an image model (its <see cref="LanguageModel.Forward(Loom.Data.FeatureBatch)"/> gives (B, 1, classes) logits) on a split.</summary>
public static class ImageEvaluator
{
    /// <summary>
    /// Scores the first <paramref name="maxImages"/> images of <paramref name="images"/> (all when null), in order, in eval
    /// mode and without gradients; the model's training mode is restored. Losses and hits are summed on the device; one
    /// host sync at the end.
    /// </summary>
    public static ImageEvaluationResult Evaluate(LanguageModel model, ImageBatcher images, Device device, int? maxImages = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(images);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var lossSum = zeros(1, float64, device);
            var hits = zeros(1, int64, device);
            long count = 0;
            foreach (var cpuBatch in images.EvaluationBatches(maxImages))
            {
                using var step = NewDisposeScope();
                using var cpu = cpuBatch;
                using var batch = cpuBatch.To(device); // on the CPU the same tensors: disposed with cpu only after use
                var logits = model.Forward(batch).Logits.to(float32).squeeze(1); // (B, classes)
                var labels = batch.Targets.view(-1);                            // (B)
                lossSum.add_(nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).to(float64));
                hits.add_(logits.argmax(-1).eq(labels).sum());
                count += labels.shape[0];
            }
            if (count == 0) throw new ArgumentException("there are no held-out images to evaluate");
            return new ImageEvaluationResult(lossSum.item<double>() / count, hits.item<long>() / (double)count, count);
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
