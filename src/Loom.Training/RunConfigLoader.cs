using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models;

namespace Loom.Training;

/// <summary>
/// Resolves a <see cref="RunConfig"/> in layers: record defaults, then the model preset (into
/// "model"), then the run file, then <c>--set key=value</c> overrides.
/// </summary>
public static class RunConfigLoader
{
    /// <summary>Loads and validates a run config.</summary>
    /// <param name="runFile">Optional run file (JSON with model_preset, model, data, training, device).</param>
    /// <param name="preset">Model preset overriding the run file's model_preset.</param>
    /// <param name="overrides">Overrides such as "model.num_layers=4", applied last.</param>
    /// <param name="configsDirectory">Folder holding models/*.json presets; defaults to the one beside the program.</param>
    /// <exception cref="ConfigException">A file is missing, a key unknown or a value invalid.</exception>
    public static RunConfig Load(string? runFile, string? preset, IEnumerable<string> overrides, string? configsDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(overrides);
        JsonObject run = runFile is null ? new JsonObject() : LayeredConfig.ReadFile(ResolveRunFile(runFile, configsDirectory));
        string presetName = preset ?? (run["model_preset"] is JsonValue v && v.TryGetValue(out string? p) ? p! : new RunConfig().ModelPreset);
        var config = new LayeredConfig()
            .Merge(ModelArchitectures.WithDefaultArchitecture(LayeredConfig.ReadFile(ModelPresets.Resolve(presetName, configsDirectory))), "model")
            .Merge(run)
            .Merge(new JsonObject { ["model_preset"] = presetName });
        foreach (var assignment in overrides) config.Set(assignment);
        try
        {
            return config.Bind<RunConfig>().Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"config: {e.Message}", e);
        }
    }

    /// <summary>Reads a resolved config.json written by a run.</summary>
    public static RunConfig ReadResolved(string path)
    {
        try
        {
            var run = LayeredConfig.ReadFile(path);
            // Runs written before model options were tagged hold a decoder-only model.
            if (run["model"] is JsonObject model) run["model"] = ModelArchitectures.WithDefaultArchitecture(model);
            return (new LayeredConfig().Merge(run).Bind<RunConfig>()).Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Serializes a config the way runs store it.</summary>
    public static string ToJson(RunConfig config) => JsonSerializer.Serialize(config, LoomJson.Options);

    private static string ResolveRunFile(string nameOrPath, string? configsDirectory)
    {
        if (File.Exists(nameOrPath)) return nameOrPath;
        string named = Path.Combine(configsDirectory ?? ModelPresets.DefaultConfigsDirectory, "runs", nameOrPath + ".json");
        if (File.Exists(named)) return named;
        throw new ConfigException($"run config not found: '{nameOrPath}' (pass a JSON file or the name of one in configs/runs)");
    }
}
