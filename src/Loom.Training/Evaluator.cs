using Loom.Data;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Training;

/// <summary>Scores a model on held-out batches: loss (nats/token), perplexity and bits per byte.</summary>
public static class Evaluator
{
    /// <summary>Mean cross-entropy over up to <paramref name="maxBatches"/> fixed held-out batches.</summary>
    public static EvaluationResult Evaluate(LanguageModel model, LmBatcher batches, int maxBatches, double bytesPerToken, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        bool wasTraining = model.training;
        model.eval();
        double nats = 0;
        long tokens = 0;
        // The batcher hands out tensors in the scope that is current when it runs, so the whole
        // evaluation sits in one scope; each batch's forward pass gets its own inside it.
        using (var evaluation = NewDisposeScope())
        using (no_grad())
        {
            foreach (var (inputs, targets) in batches.EvaluationBatches(maxBatches))
            {
                using var scope = NewDisposeScope();
                using var batch = FeatureBatch.Decoder(inputs.to(device), targets.to(device));
                var loss = model.Loss(batch, zLossWeight: 0);
                long n = targets.NumberOfElements;
                nats += loss.CrossEntropy.item<float>() * n;
                tokens += n;
            }
        }
        if (wasTraining) model.train();
        double mean = nats / Math.Max(1, tokens);
        return new EvaluationResult(mean, Math.Exp(mean), mean / Math.Log(2) / bytesPerToken, tokens);
    }

    /// <summary>
    /// Mean cross-entropy over the weighted targets of held-out feature batches (image + text rows), each disposed
    /// after its forward pass; bits per byte are those of a byte vocabulary's tokens.
    /// </summary>
    public static EvaluationResult Evaluate(LanguageModel model, IEnumerable<FeatureBatch> batches, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        bool wasTraining = model.training;
        model.eval();
        double nats = 0, tokens = 0;
        using (no_grad())
        {
            foreach (var held in batches)
            {
                using var scope = NewDisposeScope();
                using var owned = held;
                using var batch = held.To(device);
                var loss = model.Loss(batch, zLossWeight: 0);
                double n = (batch.LossWeights ?? ones_like(batch.Targets, float32)).sum().item<float>();
                nats += loss.CrossEntropy.item<float>() * n;
                tokens += n;
            }
        }
        if (wasTraining) model.train();
        double mean = nats / Math.Max(1, tokens);
        return new EvaluationResult(mean, Math.Exp(mean), mean / Math.Log(2), (long)tokens);
    }
}
