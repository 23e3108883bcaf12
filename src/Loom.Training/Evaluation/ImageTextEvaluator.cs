using System.Globalization;
using Loom.Data;
using Loom.Data.ImageText;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Models.VisionLanguage;
using static TorchSharp.torch;

namespace Loom.Training.Evaluation;

/// <summary>One kind of prompt's accuracy: how many held-out examples named the image's class.</summary>
/// <param name="Kind">The examples' "kind" text feature (caption, question).</param>
/// <param name="Correct">Predictions that named the right class.</param>
/// <param name="Total">Examples decoded.</param>
public sealed record ImageTextAccuracy(string Kind, int Correct, int Total)
{
    /// <summary>Correct over total, in percent.</summary>
    public double Percent => Total == 0 ? 0 : 100.0 * Correct / Total;

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Kind}: {Percent:F2}% ({Correct}/{Total})");
}

/// <summary>
/// Scores an image + text model on <see cref="FashionMnistCaptions"/>-style examples (text features "kind" and "class"):
/// greedy continuations of each prompt with its image, by the cache-free reference decoder, and per kind the share whose
/// caption (<see cref="FashionMnistCaptions.ClassOfCaption"/>) or answer (<see cref="FashionMnistCaptions.ClassOfAnswer"/>)
/// names the image's class.
/// </summary>
public static class ImageTextEvaluator
{
    /// <summary>Decodes <paramref name="examples"/> in batches of <paramref name="batchSize"/> (same-length prompts together) and scores them.</summary>
    /// <param name="model">An image + text model.</param>
    /// <param name="examples">Tokenized examples with "inputs", "image" and the text features "kind" and "class".</param>
    /// <param name="vocabulary">The vocabulary (EOS ends a continuation; predictions are decoded with it).</param>
    /// <param name="batchSize">Rows per forward pass.</param>
    /// <param name="maxNewTokens">The longest continuation.</param>
    /// <param name="predictions">Receives (example index, prediction) for every example, or null.</param>
    public static IReadOnlyList<ImageTextAccuracy> Evaluate(LanguageModel model, IReadOnlyList<Example> examples, IVocabulary vocabulary, int batchSize,
        int maxNewTokens, Action<int, string>? predictions = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var spec = model.ImageInput ?? throw new ArgumentException($"a {model.Options.Architecture} model reads no images: evaluate an image + text model");
        bool wasTraining = model.training;
        model.eval();
        var texts = new string[examples.Count];
        foreach (var group in Enumerable.Range(0, examples.Count).GroupBy(i => examples[i].Tokens["inputs"].Length))
            foreach (var chunk in group.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                int length = group.Key;
                var prompts = new long[chunk.Length * length];
                var pixels = new float[chunk.Length * spec.ImageSize * spec.ImageSize];
                for (int r = 0; r < chunk.Length; r++)
                {
                    var e = examples[chunk[r]];
                    for (int i = 0; i < length; i++) prompts[r * length + i] = e.Tokens["inputs"][i];
                    ImagePrompts.ToUnit(e.Tokens[ImagePrompts.ImageFeature]).CopyTo(pixels, r * spec.ImageSize * spec.ImageSize);
                }
                var outputs = ReferenceImageTextDecoder.Greedy(model, tensor(prompts, [chunk.Length, length], int64),
                    tensor(pixels, [chunk.Length, 1, spec.ImageSize, spec.ImageSize], float32), maxNewTokens, vocabulary.EosId);
                for (int r = 0; r < chunk.Length; r++)
                {
                    texts[chunk[r]] = vocabulary.Decode(outputs[r]);
                    predictions?.Invoke(chunk[r], texts[chunk[r]]);
                }
            }
        if (wasTraining) model.train();
        return Score(examples, texts);
    }

    /// <summary>
    /// Per kind of prompt, the share of <paramref name="predictions"/> (one per example, however decoded) whose caption or
    /// answer names the example's "class".
    /// </summary>
    public static IReadOnlyList<ImageTextAccuracy> Score(IReadOnlyList<Example> examples, IReadOnlyList<string> predictions)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(predictions);
        if (examples.Count != predictions.Count) throw new ArgumentException($"{examples.Count} examples but {predictions.Count} predictions");
        var correct = new Dictionary<string, (int Correct, int Total)>(StringComparer.Ordinal);
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            string kind = e.Text("kind");
            string? named = kind == "caption" ? FashionMnistCaptions.ClassOfCaption(predictions[i]) : FashionMnistCaptions.ClassOfAnswer(predictions[i]);
            var (c, t) = correct.GetValueOrDefault(kind);
            correct[kind] = (c + (named == e.Text("class") ? 1 : 0), t + 1);
        }
        return [.. correct.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => new ImageTextAccuracy(k.Key, k.Value.Correct, k.Value.Total))];
    }
}
