using Loom.Models;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>A mixture-of-experts model through the trainer: auxiliary losses and routing statistics in metrics.jsonl, MFU from active parameters.</summary>
public class MoeTrainingTests
{
    [Fact]
    public void MetricsLogTheAuxiliaryLossesExpertLoadsAndDroppedFraction()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), steps: 4) with
        {
            Model = TrainerFixtures.TinyModel with { MlpDim = 32, Moe = new MoeOptions { NumExperts = 4, TopK = 2, CapacityFactor = 1.0 } },
        };
        string run = dir.File("run");
        using (var trainer = new Trainer(config, TrainingDataLoader.Load(config.Data, config.Training), run, CPU))
        {
            Assert.True(trainer.Model.ActiveParameterCount < trainer.Model.ParameterCount);
            trainer.Run();
        }
        var train = JsonlMetricSink.ReadAll(Path.Combine(run, "metrics.jsonl")).Where(e => e.Split == MetricEvent.TrainSplit).ToList();
        Assert.Equal(2, train.Count); // log_every = 2 over 4 steps
        foreach (var e in train)
        {
            Assert.NotNull(e.AuxiliaryLosses);
            Assert.Equal(["load_balancing", "router_z_loss"], e.AuxiliaryLosses!.Keys.Order());
            // α · E · Σ fᵢ Pᵢ is at least α = 0.01, reached at perfectly uniform routing.
            Assert.InRange(e.AuxiliaryLosses["load_balancing"], 0.00999, 0.04);
            Assert.True(e.AuxiliaryLosses["router_z_loss"] > 0);
            Assert.Equal(4, e.ExpertLoad!.Count);
            Assert.Equal(1.0, e.ExpertLoad.Sum(), 4);
            Assert.InRange(e.DroppedFraction!.Value, 0, 1);
        }
        // A dense run logs none of them.
        var dense = JsonlMetricSink.ReadAll(Path.Combine(TrainDense(dir), "metrics.jsonl")).First(e => e.Split == MetricEvent.TrainSplit);
        Assert.Null(dense.AuxiliaryLosses);
        Assert.Null(dense.ExpertLoad);
    }

    private static string TrainDense(TempDirectory dir)
    {
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), steps: 2);
        string run = dir.File("dense");
        using var trainer = new Trainer(config, TrainingDataLoader.Load(config.Data, config.Training), run, CPU);
        trainer.Run();
        return run;
    }
}
