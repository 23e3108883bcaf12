using System.Text;
using Loom.Models;
using Loom.Training.Tests.Metrics;

namespace Loom.Training.Tests;

/// <summary>Small run configs over generated text, for trainer tests that must be fast.</summary>
internal static class TrainerFixtures
{
    public static DecoderLmOptions TinyModel => new()
    {
        VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
    };

    /// <summary>A small corpus: three documents of varied, regular English-like text.</summary>
    public static string WriteCorpus(TempDirectory dir)
    {
        string folder = dir.File("corpus");
        Directory.CreateDirectory(folder);
        var words = new[] { "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "a", "cat", "sleeps" };
        for (int d = 0; d < 3; d++)
        {
            var text = new StringBuilder();
            for (int i = 0; i < 600; i++) text.Append(words[(i * (d + 3) + i / 7) % words.Length]).Append(i % 11 == 10 ? ".\n" : " ");
            File.WriteAllText(Path.Combine(folder, $"doc{d}.txt"), text.ToString());
        }
        return folder;
    }

    public static RunConfig Config(string dataPath, long steps, string optimizer = "adafactor") => new RunConfig
    {
        ModelPreset = "test",
        Model = TinyModel,
        Device = "cpu",
        Data = new DataOptions { Path = dataPath, SequenceLength = 32, ValidationFraction = 0.34 },
        Training = new TrainerOptions
        {
            Steps = steps, BatchSize = 4, GradientAccumulation = 2, Optimizer = optimizer, LearningRate = optimizer == "adamw" ? 3e-3 : 1e-2,
            WarmupSteps = 3, LogEvery = 2, EvalEvery = 0, EvalBatches = 2, CheckpointEvery = 0, KeepCheckpoints = 2, Seed = 5,
            WeightDecay = optimizer == "adamw" ? 0.1 : 1.0,
        },
    }.Validate();
}
