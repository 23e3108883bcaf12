namespace Loom.Data.ImageText;

/// <summary>
/// Text with images in it: <see cref="Marker"/> in a prompt stands for one image, and becomes a run of
/// placeholder ids, one per soft token the image turns into, where the model puts the image's soft tokens.
/// </summary>
public static class ImagePrompts
{
    /// <summary>What stands for an image in prompt text.</summary>
    public const string Marker = "<image>";

    /// <summary>The name of the image feature of image + text examples: the pixels, row-major, 0 to 255.</summary>
    public const string ImageFeature = "image";

    /// <summary>
    /// The placeholder id of <paramref name="vocabulary"/>: its first sentinel (<c>&lt;extra_id_0&gt;</c>, the last id),
    /// so that a byte vocabulary plus one extra id (<c>byte+extra_ids=1</c>) holds text and images.
    /// </summary>
    /// <exception cref="ArgumentException">The vocabulary has no extra ids.</exception>
    public static int PlaceholderId(IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return vocabulary is ExtraIdsVocabulary { ExtraIdCount: > 0 } extra
            ? extra.SentinelId(0)
            : throw new ArgumentException($"vocabulary '{vocabulary.Name}' has no extra id for the image placeholder: use data.vocabulary = byte+extra_ids=1");
    }

    /// <summary>
    /// Encodes <paramref name="text"/>, each <see cref="Marker"/> becoming <paramref name="tokensPerImage"/> copies of
    /// <paramref name="placeholderId"/>; returns the ids and the number of images (markers) found.
    /// </summary>
    public static (int[] Tokens, int Images) Encode(IVocabulary vocabulary, string text, int placeholderId, int tokensPerImage)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokensPerImage);
        var parts = text.Split(Marker);
        var tokens = new List<int>();
        for (int i = 0; i < parts.Length; i++)
        {
            if (i > 0) tokens.AddRange(Enumerable.Repeat(placeholderId, tokensPerImage));
            if (parts[i].Length > 0) tokens.AddRange(vocabulary.Encode(parts[i]));
        }
        return ([.. tokens], parts.Length - 1);
    }

    /// <summary>Pixels 0..255 as floats in [0, 1], the form <see cref="FeatureNames.ImagePixels"/> holds.</summary>
    public static float[] ToUnit(IReadOnlyList<int> pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        var result = new float[pixels.Count];
        for (int i = 0; i < result.Length; i++) result[i] = pixels[i] / 255f;
        return result;
    }
}
