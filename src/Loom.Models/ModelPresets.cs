using Loom.Core;

namespace Loom.Models;

/// <summary>Finds model presets: JSON files of model options under configs/models, tagged by <c>architecture</c> (untagged: decoder_lm).</summary>
public static class ModelPresets
{
    /// <summary>The configs folder shipped beside the running program.</summary>
    public static string DefaultConfigsDirectory => Path.Combine(AppContext.BaseDirectory, "configs");

    /// <summary>Names of the presets in <paramref name="configsDirectory"/>.</summary>
    public static IReadOnlyList<string> Names(string? configsDirectory = null)
    {
        string dir = Path.Combine(configsDirectory ?? DefaultConfigsDirectory, "models");
        return Directory.Exists(dir)
            ? Directory.GetFiles(dir, "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!).Order(StringComparer.Ordinal).ToList()
            : Array.Empty<string>();
    }

    /// <summary>The file of preset <paramref name="nameOrPath"/>: a preset name (tiny, palm-8b, ...) or a JSON file path.</summary>
    /// <exception cref="ConfigException">No such preset or file.</exception>
    public static string Resolve(string nameOrPath, string? configsDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(nameOrPath);
        if (File.Exists(nameOrPath)) return Path.GetFullPath(nameOrPath);
        string file = Path.Combine(configsDirectory ?? DefaultConfigsDirectory, "models", nameOrPath + ".json");
        if (File.Exists(file)) return file;
        throw new ConfigException($"unknown model preset '{nameOrPath}': use one of {string.Join(", ", Names(configsDirectory))} or a path to a JSON file");
    }

    /// <summary>Loads and validates a preset.</summary>
    public static ModelOptions Load(string nameOrPath, string? configsDirectory = null)
    {
        var config = new LayeredConfig().Merge(ModelArchitectures.WithDefaultArchitecture(LayeredConfig.ReadFile(Resolve(nameOrPath, configsDirectory))));
        try
        {
            return config.Bind<ModelOptions>().Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(e.Message, e);
        }
    }
}
