using System.Text.Json.Nodes;

namespace Loom.Inference.Tests.Constraints;

/// <summary>Random JSON schemas over the supported subset, from a seeded generator.</summary>
internal sealed class RandomSchemas(int seed)
{
    private static readonly string[] Names = ["id", "name", "a", "b\"q", "ünï", "x y", "tags", "value", "c\\d", "n", "ok", "日本"];
    private readonly Random rng = new(seed);

    /// <summary>A schema, sometimes with <c>$defs</c> (a recursive one among them) that its subschemas refer to.</summary>
    public JsonObject Next()
    {
        bool defs = rng.Next(4) == 0;
        var schema = Schema(depth: 0, defs);
        if (schema is not JsonObject obj) obj = new JsonObject { ["anyOf"] = new JsonArray(schema) };
        if (defs)
        {
            obj["$defs"] = new JsonObject
            {
                ["leaf"] = Schema(2, false),
                ["tree"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["value"] = new JsonObject { ["type"] = "integer" },
                        ["children"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["$ref"] = "#/$defs/tree" }, ["maxItems"] = 2 },
                    },
                    ["required"] = new JsonArray("value"),
                    ["additionalProperties"] = false,
                },
            };
        }
        return obj;
    }

    private JsonNode Schema(int depth, bool defs)
    {
        int kinds = depth >= 3 ? 8 : 13;
        switch (rng.Next(defs ? kinds + 2 : kinds))
        {
            case 0: return Typed("string", rng.Next(3) == 0 ? Lengths() : null);
            case 1: return Typed("number");
            case 2: return Typed("integer");
            case 3: return Typed("boolean");
            case 4: return Typed("null");
            case 5: return new JsonObject { ["enum"] = new JsonArray([.. Enumerable.Range(0, 1 + rng.Next(4)).Select(_ => Value())]) };
            case 6: return new JsonObject { ["const"] = Value() };
            case 7: return new JsonObject { ["type"] = new JsonArray(rng.Next(2) == 0 ? "string" : "integer", "null"), ["description"] = "nullable" };
            case 8:
            case 9: return Object(depth, defs);
            case 10: return Array(depth, defs);
            case 11: return new JsonObject { ["anyOf"] = new JsonArray([.. Enumerable.Range(0, 2 + rng.Next(2)).Select(_ => Schema(depth + 1, defs))]) };
            case 12: return rng.Next(2) == 0 ? new JsonObject() : JsonValue.Create(true);
            case 13: return new JsonObject { ["$ref"] = "#/$defs/leaf" };
            default: return new JsonObject { ["$ref"] = "#/$defs/tree" };
        }
    }

    private JsonObject Typed(string type, JsonObject? extra = null)
    {
        var o = new JsonObject { ["type"] = type };
        if (rng.Next(3) == 0) o["title"] = "t";
        foreach (var (k, v) in extra ?? []) o[k] = v?.DeepClone();
        return o;
    }

    private JsonObject Lengths()
    {
        int min = rng.Next(3);
        var o = new JsonObject { ["minLength"] = min };
        if (rng.Next(2) == 0) o["maxLength"] = min + rng.Next(5);
        return o;
    }

    private JsonObject Object(int depth, bool defs)
    {
        var properties = new JsonObject();
        var required = new JsonArray();
        foreach (string name in Names.OrderBy(_ => rng.Next()).Take(rng.Next(5)))
        {
            properties[name] = Schema(depth + 1, defs);
            if (rng.Next(2) == 0) required.Add(name);
        }
        var o = new JsonObject { ["type"] = "object", ["properties"] = properties };
        if (required.Count > 0 || rng.Next(2) == 0) o["required"] = required;
        if (rng.Next(4) != 0) o["additionalProperties"] = false;
        return o;
    }

    private JsonObject Array(int depth, bool defs)
    {
        var o = new JsonObject { ["type"] = "array" };
        if (rng.Next(4) == 0) o["prefixItems"] = new JsonArray([.. Enumerable.Range(0, 1 + rng.Next(2)).Select(_ => Schema(depth + 1, defs))]);
        if (rng.Next(5) != 0) o["items"] = rng.Next(6) == 0 && o.ContainsKey("prefixItems") ? false : Schema(depth + 1, defs);
        int min = rng.Next(3);
        if (rng.Next(2) == 0) o["minItems"] = min;
        if (rng.Next(2) == 0) o["maxItems"] = min + rng.Next(3);
        if (o["items"] is JsonValue { } v && v.GetValueKind() == System.Text.Json.JsonValueKind.False)
        {
            int prefix = ((JsonArray)o["prefixItems"]!).Count;
            o["minItems"] = Math.Min(prefix, min);
        }
        return o;
    }

    private JsonNode? Value() => rng.Next(7) switch
    {
        0 => JsonValue.Create(rng.Next(-50, 50)),
        1 => JsonValue.Create(rng.Next(100) / 8.0),
        2 => JsonValue.Create(Names[rng.Next(Names.Length)]),
        3 => JsonValue.Create(rng.Next(2) == 0),
        4 => null,
        5 => new JsonArray(JsonValue.Create(1), JsonValue.Create("two")),
        _ => new JsonObject { ["k"] = "v", ["n"] = rng.Next(10) },
    };
}
