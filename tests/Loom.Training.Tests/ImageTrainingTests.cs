using Loom.Data;
using Loom.Data.Images;
using Loom.Data.Sources;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Models.Vision;
using Loom.Training.Metrics;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>An image classifier trained through the ordinary trainer: image batches, validation accuracy, checkpoints.</summary>
public class ImageTrainingTests
{
    /// <summary>
    /// Synthetic 8×8 images (not Fashion-MNIST): class c is a bright 4×4 square in quadrant c over random dim noise,
    /// so a small network separates the classes in a few dozen steps.
    /// </summary>
    private static ImageDataset SyntheticQuadrants()
    {
        var random = new Random(11);
        LabeledImage Image(int i)
        {
            int label = i % 4;
            var pixels = new byte[64];
            for (int p = 0; p < 64; p++) pixels[p] = (byte)random.Next(0, 60);
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) pixels[(r + 4 * (label / 2)) * 8 + c + 4 * (label % 2)] = (byte)random.Next(180, 256);
            return new LabeledImage(pixels, label);
        }
        return new ImageDataset("quadrants", 8, 8, ["top-left", "top-right", "bottom-left", "bottom-right"],
            [.. Enumerable.Range(0, 64).Select(Image)], [.. Enumerable.Range(0, 16).Select(Image)], [.. Enumerable.Range(0, 16).Select(Image)]);
    }

    private static TaskRegistry Registry()
    {
        var bytes = new ByteVocabulary();
        return new TaskRegistry().Add(new DataTask("quadrants", new ImageClassificationSource("memory:quadrants", SyntheticQuadrants),
            [ExamplePreprocessors.Tokenize],
            new Dictionary<string, OutputFeature> { ["inputs"] = new(bytes, AddEos: false), ["targets"] = new(bytes) }));
    }

    private static RunConfig Config(long steps) => TrainerFixtures.Config("unused", steps, "adamw") with
    {
        Model = new ImageClassifierOptions
        {
            ImageSize = 8, NumClasses = 4, StemWidth = 8, StemKernelSize = 3, StageWidths = [8, 16], StageBlocks = [1, 1], KernelSize = 3, NumHeads = 1,
        },
        Data = new DataOptions { Task = "quadrants", SequenceLength = 1 },
        Training = TrainerFixtures.Config("unused", steps, "adamw").Training with
        {
            BatchSize = 8, GradientAccumulation = 1, LearningRate = 1e-2, WeightDecay = 0, EvalEvery = steps, EvalBatches = 2, CheckpointEvery = steps, ZLoss = 0,
        },
    };

    [Fact]
    public void TrainsThroughTheTrainerReportsAccuracyAndReloadsFromItsCheckpoint()
    {
        using var dir = new TempDirectory();
        var config = Config(30);
        var data = TrainingDataLoader.Load(config.Data, config.Training, registry: Registry(), layout: config.Model.FeatureLayout);
        Assert.IsType<ImageBatcher>(data.Train);
        using var trainer = new Trainer(config, data, dir.File("run"), CPU);
        var result = trainer.Run();

        var events = JsonlMetricSink.ReadAll(Path.Combine(dir.File("run"), "metrics.jsonl"));
        var validation = events.Last(e => e.Split == MetricEvent.ValidationSplit);
        Assert.True(validation.Metrics!["accuracy"] >= 0.5, // chance is 0.25
            $"validation accuracy {validation.Metrics["accuracy"]}");
        Assert.Null(validation.BitsPerByte);

        var (loaded, _) = ModelCheckpoint.Load(result.Checkpoint!);
        using (loaded)
        {
            Assert.Equal(ModelArchitectures.ImageClassifier, loaded.Options.Architecture);
            using var scope = NewDisposeScope();
            using var batch = data.ValidationImages!.MakeBatch([0, 1, 2, 3]);
            trainer.Model.eval();
            loaded.eval();
            Assert.True(trainer.Model.Forward(batch).Logits.equal(loaded.Forward(batch).Logits).all().item<bool>());
        }
    }

    [Fact]
    public void ImageModelsRefuseTextData()
    {
        var config = Config(2);
        var e = Assert.Throws<ArgumentException>(() => TrainingDataLoader.Load(config.Data with { Task = null }, config.Training, registry: Registry(), layout: config.Model.FeatureLayout));
        Assert.Contains("trains on an image task", e.Message);
    }
}
