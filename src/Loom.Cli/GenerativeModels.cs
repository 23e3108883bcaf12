using Loom.Data.FeatureConverters;
using Loom.Models;

namespace Loom.Cli;

/// <summary>What the text-generating commands (generate, serve, infer) check about a loaded checkpoint.</summary>
internal static class GenerativeModels
{
    /// <summary>Throws a one-line <see cref="ArgumentException"/> (disposing the model) unless it generates text.</summary>
    public static LanguageModel Require(LanguageModel model, string checkpoint)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.FeatureLayout != FeatureLayout.Image) return model;
        string architecture = model.Options.Architecture;
        model.Dispose();
        throw new ArgumentException($"{checkpoint} holds an {architecture} model: {architecture} models classify images; they do not generate text (score it with: ./loom eval --checkpoint {checkpoint} --task fashion_mnist)");
    }
}
