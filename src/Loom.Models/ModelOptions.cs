using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace Loom.Models;

/// <summary>
/// The options of a model family, tagged by <see cref="Architecture"/> in configs and in
/// <c>model.json</c> (<c>"architecture": "decoder_lm"</c> or <c>"t5"</c>). Each family's options record
/// derives from this one and builds its model with <see cref="Build"/>, so the trainer, the engines and
/// the checkpoints never name a concrete model class.
/// </summary>
/// <remarks>
/// A config or manifest without the tag is a decoder-only model: files written before the tag existed
/// still load (<see cref="ModelArchitectures.WithDefaultArchitecture"/> supplies it).
/// </remarks>
[JsonPolymorphic(TypeDiscriminatorPropertyName = ModelArchitectures.Key, UnknownDerivedTypeHandling = JsonUnknownDerivedTypeHandling.FailSerialization)]
[JsonDerivedType(typeof(DecoderLmOptions), ModelArchitectures.DecoderLm)]
[JsonDerivedType(typeof(T5.T5Options), ModelArchitectures.T5)]
[JsonDerivedType(typeof(Reformer.ReformerOptions), ModelArchitectures.Reformer)]
[JsonDerivedType(typeof(Vision.ImageClassifierOptions), ModelArchitectures.ImageClassifier)]
[JsonDerivedType(typeof(VisionLanguage.VisionLanguageOptions), ModelArchitectures.VisionLanguage)]
public abstract record ModelOptions
{
    /// <summary>The family's tag: <see cref="ModelArchitectures.DecoderLm"/> or <see cref="ModelArchitectures.T5"/>.</summary>
    [JsonIgnore]
    public abstract string Architecture { get; }

    /// <summary>Which feature converter makes this family's batches (decoder-only or encoder-decoder rows).</summary>
    [JsonIgnore]
    public abstract Loom.Data.FeatureConverters.FeatureLayout FeatureLayout { get; }

    /// <summary>Number of token ids the embedding holds (at least the vocabulary's size).</summary>
    public int VocabSize { get; init; } = 258;

    /// <summary>Longest sequence the model accepts (for an encoder-decoder, each of the encoder's inputs and the decoder's targets).</summary>
    public int MaxSequenceLength { get; init; } = 1024;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field and the valid range; returns the options.</summary>
    public abstract ModelOptions Validate();

    /// <summary>
    /// Builds the model on <paramref name="device"/> (meta: shapes only), drawing its initial weights from
    /// <paramref name="generator"/> (a CPU generator, so that a seed gives the same weights on every device;
    /// null uses torch's default).
    /// </summary>
    public abstract LanguageModel Build(Device? device = null, Generator? generator = null);

    /// <summary>
    /// The shape of a dense decoder-only Transformer, for cost models such as <c>loom plan</c> that must not name a
    /// concrete model family; null for other models (encoder-decoders, mixtures of experts, image models).
    /// </summary>
    [JsonIgnore]
    public virtual DenseDecoderShape? DenseDecoder => null;

    /// <summary>Throws when <paramref name="value"/> is not positive, naming the field as configs spell it.</summary>
    protected static void Positive(long value, string name)
    {
        if (value <= 0) throw new ArgumentException($"model.{name} = {value} must be a positive integer");
    }
}

/// <summary>The model families Loom knows, by the tag configs and checkpoints carry.</summary>
public static class ModelArchitectures
{
    /// <summary>The key of the tag in a model's options.</summary>
    public const string Key = "architecture";

    /// <summary>Decoder-only Transformer language models (PaLM family, optionally with mixture-of-experts layers).</summary>
    public const string DecoderLm = "decoder_lm";

    /// <summary>The T5 (v1.1) encoder-decoder.</summary>
    public const string T5 = "t5";

    /// <summary>The Reformer: reversible blocks of shared-QK (LSH) attention and chunked feed-forward layers.</summary>
    public const string Reformer = "reformer";
    /// <summary>Image classifiers whose spatial layers are local self-attention (SASA) or convolutions.</summary>
    public const string ImageClassifier = "image_classifier";
    /// <summary>Gemini-style image + text models: a ViT's soft tokens interleaved with text in one decoder.</summary>
    public const string VisionLanguage = "vision_language";

    /// <summary>
    /// The model a config without a model section gets: a decoder-only model with its options' defaults
    /// (so that code outside Loom.Models need not name a concrete options class).
    /// </summary>
    public static ModelOptions DefaultOptions() => new DecoderLmOptions();

    /// <summary>Every known tag.</summary>
    public static IReadOnlyList<string> Names { get; } = [DecoderLm, T5, Reformer, ImageClassifier, VisionLanguage];

    /// <summary>
    /// Returns <paramref name="model"/> with <see cref="Key"/> set to <paramref name="architecture"/> when it
    /// has none (files written before model options were tagged; a manifest's top-level tag).
    /// </summary>
    public static System.Text.Json.Nodes.JsonObject WithDefaultArchitecture(System.Text.Json.Nodes.JsonObject model, string architecture = DecoderLm)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model[Key] is null)
        {
            // The tag first: it reads best, and it is where a serializer looks for it first.
            var tagged = new System.Text.Json.Nodes.JsonObject { [Key] = architecture };
            foreach (var (name, value) in model.ToList())
            {
                model.Remove(name);
                tagged[name] = value;
            }
            return tagged;
        }
        return model;
    }

    /// <summary>Throws a one-line error unless <paramref name="name"/> is a known tag.</summary>
    /// <exception cref="ArgumentException">An unknown architecture.</exception>
    public static string Check(string? name) =>
        name is not null && Names.Contains(name)
            ? name
            : throw new ArgumentException($"unknown model.architecture '{name}': use one of {string.Join(", ", Names)}");
}

/// <summary>The sizes that fix a dense decoder-only Transformer's cost: what <see cref="ModelOptions.DenseDecoder"/> reports.</summary>
/// <param name="NumLayers">Decoder layers.</param>
/// <param name="ModelDim">Width of the residual stream.</param>
/// <param name="NumHeads">Query heads per layer.</param>
/// <param name="NumKvHeads">Key/value heads per layer (1: multi-query).</param>
/// <param name="HeadDim">Width of a head.</param>
/// <param name="MlpDim">Hidden units of the MLP.</param>
/// <param name="VocabSize">Rows of the embedding table.</param>
/// <param name="ParallelBlock">Whether attention and MLP read the same normalised input (PaLM's parallel block).</param>
/// <param name="GatedMlp">Whether the MLP is gated (SwiGLU, GeGLU: three kernels instead of two).</param>
/// <param name="SharedEmbeddings">Whether the output layer reuses the embedding table.</param>
public sealed record DenseDecoderShape(int NumLayers, int ModelDim, int NumHeads, int NumKvHeads, int HeadDim, int MlpDim, int VocabSize,
    bool ParallelBlock, bool GatedMlp, bool SharedEmbeddings);
