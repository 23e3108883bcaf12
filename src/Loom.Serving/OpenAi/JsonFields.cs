using System.Text.Json;

namespace Loom.Serving.OpenAi;

/// <summary>
/// Typed reads of a JSON request object's fields. A missing field and an explicit null both read as
/// null; a field of the wrong type is refused with a 400 that names it.
/// </summary>
internal readonly struct JsonFields
{
    private readonly JsonElement body;
    private readonly string prefix;

    private JsonFields(JsonElement body, string prefix)
    {
        this.body = body;
        this.prefix = prefix;
    }

    /// <summary>The fields of <paramref name="body"/>, which must be an object; <paramref name="path"/> prefixes parameter names in errors.</summary>
    public static JsonFields Of(JsonElement body, string path = "")
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw ApiException.InvalidRequest(path.Length == 0
                ? $"the request body must be a JSON object, not {Describe(body)}"
                : $"{path} must be a JSON object, not {Describe(body)}", path.Length == 0 ? null : path);
        return new JsonFields(body, path.Length == 0 ? "" : path + ".");
    }

    /// <summary>The parameter name errors use for <paramref name="name"/>.</summary>
    public string Param(string name) => prefix + name;

    /// <summary>The field's value, or null when it is missing or null.</summary>
    public JsonElement? Element(string name) =>
        body.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public string? String(string name) => Element(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        var v => throw WrongType(name, "a string", v.Value),
    };

    public bool? Bool(string name) => Element(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        var v => throw WrongType(name, "true or false", v.Value),
    };

    public double? Number(string name) => Element(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v => v.GetDouble(),
        var v => throw WrongType(name, "a number", v.Value),
    };

    public long? Integer(string name) => Element(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v when v.TryGetInt64(out long n) => n,
        var v => throw WrongType(name, "an integer", v.Value),
    };

    /// <summary>An integer field that must lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public int? Integer(string name, int min, int max, string? hint = null)
    {
        long? value = Integer(name);
        if (value is null) return null;
        if (value < min || value > max)
            throw ApiException.InvalidRequest($"{Param(name)} = {value} is out of range: {hint ?? $"use an integer from {min} to {max}"}", Param(name));
        return (int)value.Value;
    }

    /// <summary>A number field that must lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public double? Number(string name, double min, double max)
    {
        double? value = Number(name);
        if (value is null) return null;
        if (!(value >= min && value <= max))
            throw ApiException.InvalidRequest(FormattableString.Invariant($"{Param(name)} = {value} is out of range: use a number from {min} to {max}"), Param(name));
        return value;
    }

    public ApiException WrongType(string name, string expected, JsonElement value) =>
        ApiException.InvalidRequest($"{Param(name)} must be {expected}, not {Describe(value)}", Param(name));

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
