using System.Text.Json;

namespace Loom.Inference.Tests.Constraints;

/// <summary>
/// An independent validator for the JSON schema subset the constraints support (written from the JSON Schema spec, not
/// from the compiler): returns null when <c>value</c> is valid, else a description of the first violation.
/// </summary>
internal static class SchemaValidator
{
    public static string? Validate(JsonElement value, JsonElement schema) => Validate(value, schema, schema, "$");

    private static string? Validate(JsonElement value, JsonElement schema, JsonElement root, string at)
    {
        if (schema.ValueKind == JsonValueKind.True) return null;
        if (schema.ValueKind == JsonValueKind.False) return $"{at}: the schema false";
        if (schema.TryGetProperty("$ref", out var reference))
        {
            string r = reference.GetString()!;
            var target = r == "#" ? root : root.GetProperty(r.Split('/')[1]).GetProperty(r.Split('/')[2]);
            return Validate(value, target, root, at);
        }
        if (schema.TryGetProperty("anyOf", out var anyOf))
            return anyOf.EnumerateArray().Any(s => Validate(value, s, root, at) is null) ? null : $"{at}: no anyOf branch matches";
        if (schema.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.String ? [type.GetString()!] : type.EnumerateArray().Select(t => t.GetString()!).ToList();
            if (!types.Any(t => HasType(value, t))) return $"{at}: {value.ValueKind} is not {string.Join("|", types)}";
        }
        if (schema.TryGetProperty("const", out var constant) && !JsonEquals(value, constant)) return $"{at}: not the const";
        if (schema.TryGetProperty("enum", out var e) && !e.EnumerateArray().Any(v => JsonEquals(value, v))) return $"{at}: not in the enum";
        if (value.ValueKind == JsonValueKind.Object)
        {
            var names = value.EnumerateObject().Select(p => p.Name).ToList();
            if (names.Distinct().Count() != names.Count) return $"{at}: duplicate property";
            JsonElement props = schema.TryGetProperty("properties", out var ps) ? ps : default;
            if (schema.TryGetProperty("required", out var required))
                foreach (var r in required.EnumerateArray())
                    if (!names.Contains(r.GetString()!)) return $"{at}: missing required '{r.GetString()}'";
            foreach (var p in value.EnumerateObject())
            {
                if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(p.Name, out var ps2))
                {
                    if (Validate(p.Value, ps2, root, $"{at}.{p.Name}") is { } error) return error;
                }
                else if (schema.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.False)
                    return $"{at}: extra property '{p.Name}'";
            }
        }
        if (value.ValueKind == JsonValueKind.Array)
        {
            var items = value.EnumerateArray().ToList();
            var prefix = schema.TryGetProperty("prefixItems", out var pi) ? pi.EnumerateArray().ToList() : [];
            for (int i = 0; i < items.Count; i++)
            {
                JsonElement? s = i < prefix.Count ? prefix[i] : schema.TryGetProperty("items", out var it) ? it : null;
                if (s is { } sub && Validate(items[i], sub, root, $"{at}[{i}]") is { } error) return error;
            }
            if (schema.TryGetProperty("minItems", out var min) && items.Count < min.GetInt32()) return $"{at}: fewer than minItems";
            if (schema.TryGetProperty("maxItems", out var max) && items.Count > max.GetInt32()) return $"{at}: more than maxItems";
        }
        if (value.ValueKind == JsonValueKind.String)
        {
            int length = value.GetString()!.EnumerateRunes().Count();
            if (schema.TryGetProperty("minLength", out var min) && length < min.GetInt32()) return $"{at}: shorter than minLength";
            if (schema.TryGetProperty("maxLength", out var max) && length > max.GetInt32()) return $"{at}: longer than maxLength";
        }
        return null;
    }

    private static bool HasType(JsonElement v, string type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number && double.IsFinite(v.GetDouble()),
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => throw new ArgumentException($"unknown type {type}"),
    };

    public static bool JsonEquals(JsonElement a, JsonElement b)
    {
        if (a.ValueKind != b.ValueKind) return false;
        return a.ValueKind switch
        {
            JsonValueKind.Object => a.EnumerateObject().Count() == b.EnumerateObject().Count()
                && a.EnumerateObject().All(p => b.TryGetProperty(p.Name, out var q) && JsonEquals(p.Value, q)),
            JsonValueKind.Array => a.GetArrayLength() == b.GetArrayLength() && a.EnumerateArray().Zip(b.EnumerateArray()).All(x => JsonEquals(x.First, x.Second)),
            JsonValueKind.String => a.GetString() == b.GetString(),
            JsonValueKind.Number => a.TryGetDecimal(out decimal x) && b.TryGetDecimal(out decimal y) ? x == y : a.GetDouble() == b.GetDouble(),
            _ => true,
        };
    }
}
