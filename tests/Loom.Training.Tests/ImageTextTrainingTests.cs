using Loom.Data;
using Loom.Data.ImageText;
using Loom.Data.Sources;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Models.VisionLanguage;
using Loom.Training.Evaluation;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>A vision_language model trained by the normal trainer on an image + text task, and how its predictions are scored.</summary>
public class ImageTextTrainingTests
{
    private static readonly ExtraIdsVocabulary Vocabulary = new(new ByteVocabulary(), 1);

    /// <summary>Synthetic 28x28 images: class c is a bright band at row 2c (no download).</summary>
    private static ImageDataset Bands()
    {
        LabeledImage Image(int i) => new([.. Enumerable.Range(0, 784).Select(p => (byte)(p / 28 / 2 == i % 10 ? 255 : 0))], i % 10);
        return new ImageDataset("bands", 28, 28, FashionMnist.ClassNames, [.. Enumerable.Range(0, 40).Select(Image)], [.. Enumerable.Range(0, 10).Select(Image)], [.. Enumerable.Range(0, 10).Select(Image)]);
    }

    private static RunConfig Config(long steps) => TrainerFixtures.Config("unused", steps) with
    {
        Model = new VisionLanguageOptions
        {
            VocabSize = 259, MaxSequenceLength = 96, ImageSize = 28, PatchSize = 7, VisionDim = 16, VisionLayers = 1, VisionHeads = 2, VisionMlpDim = 32,
            Decoder = new DecoderLmOptions { ModelDim = 32, NumLayers = 1, NumHeads = 2, HeadDim = 16, MlpDim = 64 },
        },
        Data = new DataOptions { Task = FashionMnistCaptions.Name, Vocabulary = "byte+extra_ids=1", SequenceLength = 80 },
        Training = TrainerFixtures.Config("unused", steps).Training with { GradientAccumulation = 1, EvalBatches = 2 },
    };

    [Fact]
    public void The_trainer_trains_the_vision_encoder_and_the_decoder_on_image_text_rows()
    {
        using var dir = new TempDirectory();
        var registry = new TaskRegistry().Add(FashionMnistCaptions.Create(Vocabulary, "bands", Bands));
        var config = Config(6);
        var data = TrainingDataLoader.Load(config.Data, config.Training, registry: registry, layout: config.Model.FeatureLayout);
        Assert.NotNull(data.ImageTextValidation);
        using var trainer = new Trainer(config, data, dir.Path, CPU);
        var before = trainer.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        double initial = trainer.Evaluate().Loss;
        trainer.Run();
        double after = trainer.Evaluate().Loss;
        Assert.True(after < initial, $"held-out loss {after} did not fall below {initial}");
        foreach (var (name, parameter) in trainer.Model.named_parameters())
            if (name.StartsWith("vision.", StringComparison.Ordinal) || name.StartsWith("projection.", StringComparison.Ordinal))
                Assert.False(parameter.equal(before[name]).all().item<bool>(), $"{name} was not trained: no gradient reached it through the soft tokens");
        foreach (var t in before.Values) t.Dispose();
    }

    [Fact]
    public void A_text_model_cannot_take_image_text_batches()
    {
        var registry = new TaskRegistry().Add(FashionMnistCaptions.Create(Vocabulary, "bands", Bands));
        var config = Config(2);
        var data = TrainingDataLoader.Load(config.Data, config.Training, registry: registry, layout: config.Model.FeatureLayout);
        using var dir = new TempDirectory();
        var e = Assert.Throws<ArgumentException>(() => new Trainer(config with { Model = TrainerFixtures.TinyModel with { VocabSize = 259, MaxSequenceLength = 96 } }, data, dir.Path, CPU));
        Assert.Contains("ImageText", e.Message);
    }

    [Fact]
    public void Predictions_are_scored_by_the_class_their_caption_or_answer_names()
    {
        var examples = FashionMnistCaptions.Create(Vocabulary, "bands", Bands).GetDataset("test").Take(6).ToList(); // caption, question, chat of classes 0 and 1
        var scores = ImageTextEvaluator.Score(examples, ["A photo of a t-shirt/top.", " T-shirt/top", "T-shirt/top", "A photo of a dress.", "Trouser", "Pullover"]);
        Assert.Equal([new ImageTextAccuracy("caption", 1, 2), new ImageTextAccuracy("chat", 1, 2), new ImageTextAccuracy("question", 2, 2)], scores);
        Assert.Equal(50, scores[0].Percent);
    }

    [Fact]
    public void The_shipped_run_file_trains_vision_language_on_fashion_mnist_captions()
    {
        string configs = Path.Combine(RepositoryRoot.Find(), "configs");
        var config = RunConfigLoader.Load(Path.Combine(configs, "runs", "vlm-fashion.json"), null, [], configs);
        var model = Assert.IsType<VisionLanguageOptions>(config.Model);
        Assert.Equal(ModelArchitectures.VisionLanguage, model.Architecture);
        Assert.Equal(FashionMnistCaptions.TokensPerImage, model.TokensPerImage);
        Assert.Equal(FashionMnistCaptions.Name, config.Data.Task);
        Assert.Equal(ImagePrompts.PlaceholderId(Vocabulary), model.ImageTokenId);
        Assert.Equal("byte+extra_ids=1", config.Data.Vocabulary);
    }
}
