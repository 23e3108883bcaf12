using System.Text.Encodings.Web;
using System.Text.Json;

namespace Loom.Inference.Constraints;

/// <summary>
/// Compiles the JSON schema subset Loom enforces into automaton fragments, checking the schema as it goes. Supported:
/// <c>type</c> (a name or an array of names), <c>properties</c> (emitted in declared order), <c>required</c>,
/// <c>additionalProperties</c> (<c>false</c>; <c>true</c> or absent emit only the declared properties), <c>items</c>,
/// <c>prefixItems</c>, <c>minItems</c>, <c>maxItems</c>, <c>minLength</c>, <c>maxLength</c>, <c>enum</c>, <c>const</c>,
/// <c>anyOf</c>, <c>$ref</c> to <c>#</c>, <c>#/$defs/…</c> or <c>#/definitions/…</c> (recursion included), and the
/// annotations (<c>description</c>, <c>title</c>, …), which are ignored. Anything else throws <see cref="SchemaException"/>.
/// </summary>
internal sealed class SchemaCompiler(GrammarCompiler compiler, JsonElement root)
{
    /// <summary>The most array items or string characters a bound may unroll.</summary>
    public const int MaxBound = 4096;

    private static readonly HashSet<string> Annotations =
        ["description", "title", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"];

    private static readonly HashSet<string> Supported =
        ["type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
         "minLength", "maxLength", "enum", "const", "anyOf", "$ref"];

    private static readonly string[] TypeNames = ["object", "array", "string", "number", "integer", "boolean", "null"];

    private static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private AutomatonBuilder B => compiler.Builder;

    /// <summary>Checks <paramref name="schema"/> by compiling it into a throwaway automaton.</summary>
    public static void Check(JsonElement schema)
    {
        var c = new GrammarCompiler();
        int start = new SchemaCompiler(c, schema).Emit(schema, "$", c.Builder.ReturnNode);
        try
        {
            c.Builder.Build(start);
        }
        catch (ArgumentException)
        {
            throw new SchemaException("$", $"the schema admits no value that nests at most {ByteAutomaton.MaxDepth} deep (a required property or item recurses forever)");
        }
    }

    /// <summary>The values <paramref name="schema"/> (found at <paramref name="path"/>) accepts, then <paramref name="next"/>.</summary>
    public int Emit(JsonElement schema, string path, int next)
    {
        if (schema.ValueKind == JsonValueKind.True) return compiler.AnyValue(next);
        if (schema.ValueKind == JsonValueKind.False) throw new SchemaException(path, "the schema false accepts no value");
        if (schema.ValueKind != JsonValueKind.Object) throw new SchemaException(path, "a schema must be an object or a boolean");

        var keys = new List<string>();
        foreach (var p in schema.EnumerateObject())
        {
            if (Annotations.Contains(p.Name)) continue;
            if (!Supported.Contains(p.Name)) throw new SchemaException($"{path}.{p.Name}", $"'{p.Name}' is not supported");
            keys.Add(p.Name);
        }
        CheckDefinitions(schema, path);

        if (schema.TryGetProperty("$ref", out var reference))
        {
            Alone(keys, "$ref", path);
            return Reference(reference, $"{path}.$ref", next);
        }
        if (schema.TryGetProperty("anyOf", out var anyOf))
        {
            Alone(keys, "anyOf", path);
            if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0)
                throw new SchemaException($"{path}.anyOf", "'anyOf' must be a non-empty array of schemas");
            return B.Split([.. anyOf.EnumerateArray().Select((s, i) => Emit(s, $"{path}.anyOf[{i}]", next))]);
        }

        var types = Types(schema, path, keys);
        if (schema.TryGetProperty("enum", out _) || schema.TryGetProperty("const", out _)) return Enum(schema, path, keys, types, next);
        return B.Split([.. types.Select(t => EmitType(schema, path, t, next))]);
    }

    private static void Alone(List<string> keys, string keyword, string path)
    {
        foreach (string k in keys)
            if (k != keyword) throw new SchemaException($"{path}.{k}", $"'{k}' beside '{keyword}' is not supported");
    }

    private static void CheckDefinitions(JsonElement schema, string path)
    {
        foreach (string name in (string[])["$defs", "definitions"])
            if (schema.TryGetProperty(name, out var defs) && defs.ValueKind != JsonValueKind.Object)
                throw new SchemaException($"{path}.{name}", $"'{name}' must be an object of schemas");
    }

    /// <summary>The types the schema allows: its <c>type</c>, or the one its keywords imply, or all.</summary>
    private static List<string> Types(JsonElement schema, string path, List<string> keys)
    {
        if (schema.TryGetProperty("type", out var type))
        {
            var names = new List<string>();
            if (type.ValueKind == JsonValueKind.String) names.Add(type.GetString()!);
            else if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
            {
                foreach (var t in type.EnumerateArray())
                {
                    if (t.ValueKind != JsonValueKind.String) throw new SchemaException($"{path}.type", "'type' must be a string or an array of strings");
                    names.Add(t.GetString()!);
                }
            }
            else throw new SchemaException($"{path}.type", "'type' must be a string or a non-empty array of strings");
            foreach (string n in names)
                if (!TypeNames.Contains(n))
                    throw new SchemaException($"{path}.type", $"unknown type '{n}' (use {string.Join(", ", TypeNames)})");
            if (names.Distinct().Count() != names.Count) throw new SchemaException($"{path}.type", "'type' names a type twice");
            return names;
        }
        if (keys.Any(k => k is "properties" or "required" or "additionalProperties")) return ["object"];
        if (keys.Any(k => k is "items" or "prefixItems" or "minItems" or "maxItems")) return ["array"];
        if (keys.Any(k => k is "minLength" or "maxLength")) return ["string"];
        return [.. TypeNames.Where(t => t != "integer")];
    }

    private int EmitType(JsonElement schema, string path, string type, int next) => type switch
    {
        "object" => Object(schema, path, next),
        "array" => Array(schema, path, next),
        "string" => String(schema, path, next),
        "number" => compiler.Number(integer: false, next),
        "integer" => compiler.Number(integer: true, next),
        "boolean" => B.Split(compiler.Text("true", next), compiler.Text("false", next)),
        _ => compiler.Text("null", next),
    };

    private int Object(JsonElement schema, string path, int next)
    {
        var properties = new List<(string Name, JsonElement Schema)>();
        if (schema.TryGetProperty("properties", out var props))
        {
            if (props.ValueKind != JsonValueKind.Object) throw new SchemaException($"{path}.properties", "'properties' must be an object of schemas");
            foreach (var p in props.EnumerateObject())
            {
                if (properties.Any(q => q.Name == p.Name)) throw new SchemaException($"{path}.properties.{p.Name}", $"property '{p.Name}' is declared twice");
                properties.Add((p.Name, p.Value));
            }
        }
        var required = new HashSet<string>();
        if (schema.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array) throw new SchemaException($"{path}.required", "'required' must be an array of property names");
            foreach (var r in req.EnumerateArray())
            {
                if (r.ValueKind != JsonValueKind.String) throw new SchemaException($"{path}.required", "'required' must be an array of property names");
                string name = r.GetString()!;
                if (!properties.Any(p => p.Name == name)) throw new SchemaException($"{path}.required", $"required property '{name}' is not in 'properties'");
                required.Add(name);
            }
        }
        bool closed = false;
        if (schema.TryGetProperty("additionalProperties", out var additional))
        {
            if (additional.ValueKind == JsonValueKind.Object)
                throw new SchemaException($"{path}.additionalProperties", "'additionalProperties' as a schema is not supported (use false)");
            if (additional.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                throw new SchemaException($"{path}.additionalProperties", "'additionalProperties' must be a boolean");
            closed = additional.ValueKind == JsonValueKind.False;
        }
        // An object schema with nothing declared and extra properties allowed is any object.
        if (properties.Count == 0 && !closed) return compiler.AnyObject(next);

        // Property i onwards, after `first` (no member yet) or not; each value is emitted once, whatever came before it.
        var b = B;
        var tails = new Dictionary<(int, bool), int>();
        var values = new Dictionary<int, int>();
        int Tail(int i, bool first)
        {
            if (tails.TryGetValue((i, first), out int t)) return t;
            if (i == properties.Count) t = b.Byte((byte)'}', next);
            else
            {
                var (name, s) = properties[i];
                string at = $"{path}.properties.{name}";
                bool skippable = !required.Contains(name);
                if (s.ValueKind == JsonValueKind.False)
                {
                    if (!skippable) throw new SchemaException(at, $"required property '{name}' has the schema false");
                    t = Tail(i + 1, first);
                }
                else
                {
                    if (!values.TryGetValue(i, out int value))
                        values[i] = value = Emit(s, at, Tail(i + 1, false));
                    int member = compiler.Text(JsonSerializer.Serialize(name, Compact), b.Byte((byte)':', compiler.Space(value)));
                    if (!first) member = b.Byte((byte)',', compiler.Space(member));
                    t = skippable ? b.Split(member, Tail(i + 1, first)) : member;
                }
            }
            tails[(i, first)] = t;
            return t;
        }
        return b.Byte((byte)'{', Tail(0, true));
    }

    private int Array(JsonElement schema, string path, int next)
    {
        var prefix = new List<JsonElement>();
        if (schema.TryGetProperty("prefixItems", out var prefixItems))
        {
            if (prefixItems.ValueKind != JsonValueKind.Array) throw new SchemaException($"{path}.prefixItems", "'prefixItems' must be an array of schemas");
            prefix.AddRange(prefixItems.EnumerateArray());
        }
        JsonElement? items = null;
        if (schema.TryGetProperty("items", out var it))
        {
            if (it.ValueKind == JsonValueKind.Array) throw new SchemaException($"{path}.items", "'items' as an array is not supported (use prefixItems)");
            items = it;
        }
        int min = Count(schema, "minItems", path, 0);
        int max = Count(schema, "maxItems", path, int.MaxValue);
        if (min > max) throw new SchemaException($"{path}.minItems", "'minItems' exceeds 'maxItems'");
        bool extras = items is not { ValueKind: JsonValueKind.False };
        if (!extras) max = Math.Min(max, prefix.Count);
        if (min > max) throw new SchemaException($"{path}.minItems", "'minItems' exceeds the number of items 'prefixItems' and 'items' allow");
        if (min > MaxBound || (max != int.MaxValue && max > Math.Max(prefix.Count, MaxBound)))
            throw new SchemaException($"{path}.{(min > MaxBound ? "minItems" : "maxItems")}", $"bounds above {MaxBound} items are not supported");

        if (prefix.Count > max) prefix.RemoveRange(max, prefix.Count - max);
        var b = B;
        int close = b.Byte((byte)']', next);
        // After the prefix, the rest is a repetition of the items rule.
        int rest;
        if (!extras || max <= prefix.Count) rest = close;
        else
        {
            int itemRule = items is { } s
                ? compiler.Rule($"{path}.items", end => Emit(s, $"{path}.items", end))
                : compiler.AnyValueRule();
            int restMin = Math.Max(0, min - prefix.Count), restMax = max == int.MaxValue ? int.MaxValue : max - prefix.Count;
            rest = compiler.Repeat(itemRule, restMin, restMax, to => b.Byte((byte)',', compiler.Space(to)), close, leadingSeparator: prefix.Count > 0);
        }
        int after = rest;
        for (int k = prefix.Count - 1; k >= 0; k--)
        {
            int item = compiler.Rule($"{path}.prefixItems[{k}]", end => Emit(prefix[k], $"{path}.prefixItems[{k}]", end));
            int more = b.Call(item, after);
            if (k > 0) more = b.Byte((byte)',', compiler.Space(more));
            after = k >= min ? b.Split(close, more) : more;
        }
        return b.Byte((byte)'[', after);
    }

    private int String(JsonElement schema, string path, int next)
    {
        int min = Count(schema, "minLength", path, 0);
        int max = Count(schema, "maxLength", path, int.MaxValue);
        if (min > max) throw new SchemaException($"{path}.minLength", "'minLength' exceeds 'maxLength'");
        if (min > MaxBound || (max != int.MaxValue && max > MaxBound))
            throw new SchemaException($"{path}.{(min > MaxBound ? "minLength" : "maxLength")}", $"bounds above {MaxBound} characters are not supported");
        return compiler.String(next, min, max);
    }

    private static int Count(JsonElement schema, string keyword, string path, int absent)
    {
        if (!schema.TryGetProperty(keyword, out var value)) return absent;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int n) || n < 0)
            throw new SchemaException($"{path}.{keyword}", $"'{keyword}' must be a non-negative integer");
        return n;
    }

    private int Enum(JsonElement schema, string path, List<string> keys, List<string> types, int next)
    {
        foreach (string k in keys)
            if (k is not ("enum" or "const" or "type"))
                throw new SchemaException($"{path}.{k}", $"'{k}' beside 'enum' or 'const' is not supported");
        if (keys.Contains("enum") && keys.Contains("const")) throw new SchemaException($"{path}.const", "'const' beside 'enum' is not supported");
        List<JsonElement> values;
        if (schema.TryGetProperty("const", out var constant)) values = [constant];
        else
        {
            var e = schema.GetProperty("enum");
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() == 0)
                throw new SchemaException($"{path}.enum", "'enum' must be a non-empty array");
            values = [.. e.EnumerateArray()];
        }
        var texts = values.Where(v => types.Any(t => IsOfType(v, t))).Select(v => JsonSerializer.Serialize(v, Compact)).Distinct().ToList();
        if (texts.Count == 0) throw new SchemaException($"{path}.{(keys.Contains("enum") ? "enum" : "const")}", "no value is of the schema's type");
        return B.Split([.. texts.Select(t => compiler.Text(t, next))]);
    }

    private static bool IsOfType(JsonElement v, string type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        _ => v.ValueKind == JsonValueKind.Null,
    };

    private int Reference(JsonElement reference, string path, int next)
    {
        if (reference.ValueKind != JsonValueKind.String) throw new SchemaException(path, "'$ref' must be a string");
        string r = reference.GetString()!;
        string[] parts = r == "#" ? [] : r.StartsWith("#/", StringComparison.Ordinal) ? r[2..].Split('/') : ["?"];
        if (parts.Length != 0 && (parts.Length != 2 || parts[0] is not ("$defs" or "definitions")))
            throw new SchemaException(path, $"'$ref' '{r}' is not supported (use #, #/$defs/NAME or #/definitions/NAME)");
        JsonElement target = root;
        string targetPath = "$";
        if (parts.Length == 2)
        {
            string name = parts[1].Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (!root.TryGetProperty(parts[0], out var defs) || defs.ValueKind != JsonValueKind.Object || !defs.TryGetProperty(name, out target))
                throw new SchemaException(path, $"'$ref' '{r}' names no definition");
            targetPath = $"$.{parts[0]}.{name}";
        }
        int rule = compiler.Rule(targetPath, end => Emit(target, targetPath, end));
        return B.Call(rule, next);
    }
}
