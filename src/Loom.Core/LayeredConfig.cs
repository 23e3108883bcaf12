using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Loom.Core;

/// <summary>
/// Builds a typed config from layers of JSON: defaults, then files (a model preset, a run file),
/// then command-line overrides such as <c>model.num_layers=4</c>. Later layers win key by key.
/// Binding refuses unknown keys and bad values with a message that names them.
/// </summary>
public sealed class LayeredConfig
{
    private readonly JsonObject root = new();

    /// <summary>The merged JSON so far (a copy).</summary>
    public JsonObject ToJson() => (JsonObject)root.DeepClone();

    /// <summary>Merges <paramref name="layer"/> over the config, under <paramref name="section"/> (null = root).</summary>
    public LayeredConfig Merge(JsonObject layer, string? section = null)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var target = section is null ? root : Section(root, section.Split('.'));
        MergeInto(target, layer);
        return this;
    }

    /// <summary>Reads a JSON file (comments allowed) as an object.</summary>
    /// <exception cref="ConfigException">The file is missing or is not a JSON object.</exception>
    public static JsonObject ReadFile(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"config file not found: {path}");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject
                   ?? throw new ConfigException($"{path}: a config file must hold a JSON object");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{path}: invalid JSON at line {e.LineNumber + 1}: {FirstLine(e.Message)}", e);
        }
    }

    /// <summary>Applies an override <c>dotted.key=value</c>; the value is read as JSON when it parses, else as a string.</summary>
    /// <exception cref="ConfigException">The override has no '=' or an empty key.</exception>
    public LayeredConfig Set(string assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        int eq = assignment.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new ConfigException($"--set '{assignment}': expected KEY=VALUE, for example --set model.num_layers=4");
        string[] path = assignment[..eq].Trim().Split('.');
        string text = assignment[(eq + 1)..].Trim();
        JsonNode? value;
        try { value = JsonNode.Parse(text); }
        catch (JsonException) { value = JsonValue.Create(text); }
        Section(root, path[..^1])[path[^1]] = value;
        return this;
    }

    /// <summary>
    /// Deserializes the section <paramref name="section"/> (null = root) into <typeparamref name="T"/>.
    /// Missing keys keep the record's defaults.
    /// </summary>
    /// <remarks>
    /// A section typed by an abstract record marked <see cref="JsonPolymorphicAttribute"/> (model options,
    /// tagged by <c>architecture</c>) is checked against the variant its tag names.
    /// </remarks>
    /// <exception cref="ConfigException">A key is unknown, a tag names no variant, or a value has the wrong type.</exception>
    public T Bind<T>(string? section = null)
    {
        JsonNode node = section is null ? root : (Find(root, section.Split('.')) ?? new JsonObject());
        CheckKeys(node, typeof(T), section ?? "");
        try
        {
            return node.Deserialize<T>(LoomJson.Options) ?? throw new ConfigException($"config: '{section}' is empty");
        }
        catch (JsonException e)
        {
            string key = Join(section, e.Path?.TrimStart('$', '.') ?? "");
            throw new ConfigException($"config: bad value for '{key}': {FirstLine(e.Message)}", e);
        }
    }

    private static void CheckKeys(JsonNode node, Type type, string prefix)
    {
        if (node is not JsonObject obj) return;
        string? tagKey = null;
        IReadOnlyList<JsonDerivedTypeAttribute> variants = [];
        if (type.GetCustomAttribute<JsonPolymorphicAttribute>() is { } polymorphic)
        {
            tagKey = polymorphic.TypeDiscriminatorPropertyName ?? "$type";
            variants = [.. type.GetCustomAttributes<JsonDerivedTypeAttribute>()];
            string names = string.Join(", ", variants.Select(v => v.TypeDiscriminator));
            string tagPath = Join(prefix, tagKey);
            string? tag = obj[tagKey] is JsonValue value && value.TryGetValue(out string? text) ? text : null;
            if (tag is null) throw new ConfigException($"config: '{tagPath}' is missing: set it to one of {names}");
            type = variants.FirstOrDefault(v => Equals(v.TypeDiscriminator, tag))?.DerivedType
                   ?? throw new ConfigException($"config: unknown {tagPath} '{tag}': use one of {names}");
        }
        var props = Settable(type);
        foreach (var (key, child) in obj)
        {
            string path = Join(prefix, key);
            if (key == tagKey) continue;
            if (!props.TryGetValue(key, out var prop))
            {
                // A key of another variant: say which one it belongs to rather than only that it is unknown.
                var owner = variants.FirstOrDefault(v => Settable(v.DerivedType).ContainsKey(key));
                if (owner is not null)
                    throw new ConfigException($"config: '{path}' is an option of {Join(prefix, tagKey!)} '{owner.TypeDiscriminator}', not of '{obj[tagKey!]}': set {Join(prefix, tagKey!)}={owner.TypeDiscriminator} (or use a {owner.TypeDiscriminator} preset), or drop the key");
                throw new ConfigException($"config: unknown key '{path}' (known keys{(prefix.Length > 0 ? $" of '{prefix}'" : "")}: {string.Join(", ", props.Keys.Order(StringComparer.Ordinal))})");
            }
            var t = Nullable.GetUnderlyingType(prop.PropertyType) ?? prop.PropertyType;
            if (child is JsonObject && t.IsClass && t != typeof(string) && !t.IsAssignableTo(typeof(System.Collections.IEnumerable)))
                CheckKeys(child, t, path);
        }
    }

    private static Dictionary<string, PropertyInfo> Settable(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetCustomAttribute<JsonIgnoreAttribute>() is null)
            .ToDictionary(p => JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name), p => p);

    private static JsonObject Section(JsonObject obj, IEnumerable<string> path)
    {
        foreach (var key in path)
        {
            if (obj[key] is not JsonObject next)
            {
                next = new JsonObject();
                obj[key] = next;
            }
            obj = next;
        }
        return obj;
    }

    private static JsonNode? Find(JsonObject obj, IEnumerable<string> path)
    {
        JsonNode? node = obj;
        foreach (var key in path) node = (node as JsonObject)?[key];
        return node;
    }

    private static void MergeInto(JsonObject target, JsonObject layer)
    {
        foreach (var (key, value) in layer)
        {
            if (value is JsonObject child && target[key] is JsonObject existing) MergeInto(existing, child);
            else target[key] = value?.DeepClone();
        }
    }

    private static string Join(string? prefix, string key) => string.IsNullOrEmpty(prefix) ? key : key.Length == 0 ? prefix : $"{prefix}.{key}";

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();
}
