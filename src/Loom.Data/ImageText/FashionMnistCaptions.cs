using System.Globalization;
using Loom.Data.Sources;
using Loom.Data.Tasks;

namespace Loom.Data.ImageText;

/// <summary>
/// The built-in image + text task <c>fashion_mnist_captions</c>: every Fashion-MNIST image gives three examples,
/// a caption (<c>&lt;image&gt;</c> → "A photo of a trouser."), a question
/// (<c>&lt;image&gt; Question: what is this clothing item? Answer:</c> → " Trouser") and the same question as a chat
/// turn in Loom's default chat template (<see cref="ChatPrompt"/> → "Trouser"), loss on the targets.
/// Features: "image" (784 pixels 0..255), "inputs" (placeholder ids and text), "targets" (text + EOS), and the
/// text features "kind" (caption, question or chat) and "class" (the class name).
/// </summary>
public static class FashionMnistCaptions
{
    /// <summary>The task's registry name.</summary>
    public const string Name = "fashion_mnist_captions";

    /// <summary>
    /// Soft tokens per image the task's prompts hold: a 28×28 image in 7×7 patches. A vision_language model trained
    /// on it needs <c>(image_size / patch_size)²</c> equal to this.
    /// </summary>
    public const int TokensPerImage = 16;

    /// <summary>Image height and width in pixels.</summary>
    public const int ImageSize = 28;

    /// <summary>The caption example's prompt.</summary>
    public const string CaptionPrompt = ImagePrompts.Marker;

    /// <summary>The question example's prompt.</summary>
    public const string QuestionPrompt = ImagePrompts.Marker + " Question: what is this clothing item? Answer:";

    /// <summary>
    /// The chat example's prompt: the question as <c>loom serve</c> renders a user message of an <c>image_url</c> part
    /// followed by the text part "What is this clothing item?" in Loom's default chat template (a test holds the two
    /// equal), so that a model trained on this task answers through the server's chat completions.
    /// </summary>
    public const string ChatPrompt = "<|user|>\n" + ImagePrompts.Marker + ChatQuestion + "<|end|>\n<|assistant|>\n";

    /// <summary>The text part of the chat example's user message.</summary>
    public const string ChatQuestion = "What is this clothing item?";

    /// <summary>The caption of class <paramref name="className"/>: "A photo of a trouser.", "An ankle boot." style.</summary>
    public static string Caption(string className)
    {
        ArgumentNullException.ThrowIfNull(className);
        string noun = className.ToLowerInvariant();
        return $"A photo of {("aeiou".Contains(noun[0], StringComparison.Ordinal) ? "an" : "a")} {noun}.";
    }

    /// <summary>The answer to the question for class <paramref name="className"/> (what the model continues the prompt with).</summary>
    public static string Answer(string className) => " " + className;

    /// <summary>The class a generated caption names, or null when it names none in the caption's form.</summary>
    public static string? ClassOfCaption(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        return FashionMnist.ClassNames.FirstOrDefault(c => string.Equals(Caption(c), caption.Trim(), StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The class a generated answer names, or null when it is none of them.</summary>
    public static string? ClassOfAnswer(string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        return FashionMnist.ClassNames.FirstOrDefault(c => string.Equals(c, answer.Trim(), StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// Creates the task over <paramref name="load"/>'s images with <paramref name="vocabulary"/>, which must have an
    /// extra id for the image placeholder (<see cref="ImagePrompts.PlaceholderId"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The vocabulary has no extra id.</exception>
    public static DataTask Create(IVocabulary vocabulary, string sourceFingerprint, Func<ImageDataset> load)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        int placeholder = ImagePrompts.PlaceholderId(vocabulary);
        return new DataTask(Name, new Source(sourceFingerprint, load), [new Tokenize(placeholder)],
            new Dictionary<string, OutputFeature> { ["inputs"] = new(vocabulary, AddEos: false), ["targets"] = new(vocabulary) },
            description: "Fashion-MNIST images with text: a caption of the class and a question whose answer is the class name (image + text models)");
    }

    /// <summary>Three examples per image: the caption, the question, then the question as a chat turn.</summary>
    private sealed class Source(string fingerprint, Func<ImageDataset> load) : IDataSource
    {
        private readonly Lazy<ImageDataset> dataset = new(load);

        public IReadOnlyList<string> Splits { get; } = ["train", "validation", "test"];

        public string Fingerprint { get; } = fingerprint + ":captions-v2";

        public IEnumerable<Example> Read(string split)
        {
            var d = dataset.Value;
            if (d.Rows != ImageSize || d.Columns != ImageSize)
                throw new InvalidDataException($"{Name} expects {ImageSize}x{ImageSize} images, not {d.Rows}x{d.Columns}");
            var images = split switch { "train" => d.Train, "validation" => d.Validation, _ => d.Test };
            foreach (var image in images)
            {
                int[] pixels = [.. image.Pixels.Select(p => (int)p)];
                string name = d.ClassNames[image.Label];
                yield return Make("caption", CaptionPrompt, Caption(name), name, pixels);
                yield return Make("question", QuestionPrompt, Answer(name), name, pixels);
                yield return Make("chat", ChatPrompt, name, name, pixels);
            }
        }

        private static Example Make(string kind, string inputs, string targets, string name, int[] pixels) => new(
            new Dictionary<string, string>(StringComparer.Ordinal) { ["inputs"] = inputs, ["targets"] = targets, ["kind"] = kind, ["class"] = name },
            new Dictionary<string, int[]>(StringComparer.Ordinal) { [ImagePrompts.ImageFeature] = pixels });
    }

    /// <summary>Tokenizes "inputs" with each image marker as <see cref="TokensPerImage"/> placeholder ids, and "targets" plus EOS.</summary>
    private sealed class Tokenize(int placeholder) : IPreprocessor
    {
        public string Fingerprint => string.Create(CultureInfo.InvariantCulture, $"tokenize_image_text(placeholder={placeholder},tokens_per_image={TokensPerImage})");

        public IEnumerable<Example> Apply(IEnumerable<Example> examples, PreprocessorContext context) => examples.Select(e =>
        {
            var inputs = context.OutputFeatures["inputs"].Vocabulary;
            var targets = context.OutputFeatures["targets"].Vocabulary;
            var (prompt, images) = ImagePrompts.Encode(inputs, e.Text("inputs"), placeholder, TokensPerImage);
            if (images != 1) throw new InvalidDataException($"{Name}: an example's inputs must hold one {ImagePrompts.Marker}, not {images}");
            return e.WithTokens("inputs", prompt).WithTokens("targets", [.. targets.Encode(e.Text("targets")), targets.EosId]);
        });
    }
}
