using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Core;

/// <summary>The JSON conventions of every Loom file: snake_case keys and enum values, comments and
/// trailing commas allowed, unknown keys refused.</summary>
public static class LoomJson
{
    /// <summary>Serializer options for configs, manifests and trainer state (a fresh, unshared instance).</summary>
    public static JsonSerializerOptions CreateOptions() => new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        // Tagged options (model.architecture) may list the tag anywhere: configs are merged key by key.
        AllowOutOfOrderMetadataProperties = true,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Shared read-only instance of <see cref="CreateOptions"/> (made read-only on first use).</summary>
    public static JsonSerializerOptions Options { get; } = MakeReadOnly(CreateOptions());

    private static JsonSerializerOptions MakeReadOnly(JsonSerializerOptions o)
    {
        o.TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver();
        o.MakeReadOnly();
        return o;
    }
}
