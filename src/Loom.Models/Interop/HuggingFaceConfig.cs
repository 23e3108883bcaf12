using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Models.Interop;

/// <summary>
/// A Hugging Face folder's <c>config.json</c>, with typed reads whose errors name the file and the key.
/// </summary>
public sealed class HuggingFaceConfig
{
    /// <summary>Wraps an already parsed config.</summary>
    /// <param name="json">The config object.</param>
    /// <param name="path">Where it came from, for error messages.</param>
    public HuggingFaceConfig(JsonObject json, string path)
    {
        Json = json ?? throw new ArgumentNullException(nameof(json));
        Path = path;
    }

    /// <summary>Reads <c>config.json</c> from <paramref name="directory"/>.</summary>
    /// <exception cref="InvalidDataException">The file is missing or is not a JSON object.</exception>
    public static HuggingFaceConfig Read(string directory)
    {
        string path = System.IO.Path.Combine(directory, HuggingFaceModels.ConfigFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} is not a Hugging Face model folder: {HuggingFaceModels.ConfigFile} is missing");
        try
        {
            return new HuggingFaceConfig(JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object"), path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>The parsed object.</summary>
    public JsonObject Json { get; }

    /// <summary>The file, for error messages.</summary>
    public string Path { get; }

    /// <summary>The first entry of <c>architectures</c>, or "(none)".</summary>
    public string Architecture => (Json["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>() ?? "(none)";

    /// <summary>A required integer.</summary>
    public int Int(string key) => OptionalInt(key) ?? throw Error($"missing \"{key}\"");

    /// <summary>An integer, or null when the key is absent or null.</summary>
    public int? OptionalInt(string key) => Json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<int>() : null;

    /// <summary>A number, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public double Number(string key, double fallback) => OptionalNumber(key) ?? fallback;

    /// <summary>A number, or null when the key is absent or null.</summary>
    public double? OptionalNumber(string key) => Json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : null;

    /// <summary>True when the key holds <c>true</c>.</summary>
    public bool Flag(string key) => Json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.True;

    /// <summary>A boolean, or <paramref name="fallback"/> when the key is absent or null.</summary>
    public bool Flag(string key, bool fallback) => Json[key] is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : fallback;

    /// <summary>A string, or null when the key is absent or null.</summary>
    public string? String(string key) => Json[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>An error about this file: its path, then <paramref name="message"/>.</summary>
    public InvalidDataException Error(string message) => new($"{Path}: {message}");
}
