using System.Collections;
using System.Text.Json;

namespace Loom.Data.Sources;

/// <summary>Which JSON Lines file(s) to read and which fields to take from each line.</summary>
public sealed record JsonLinesSourceOptions
{
    private readonly string path = "";
    private readonly IReadOnlyList<string> fields = [];

    /// <summary>A <c>.jsonl</c> file, or a folder searched recursively for <c>.jsonl</c> and <c>.ndjson</c> files.</summary>
    public required string Path
    {
        get => path;
        init => path = !string.IsNullOrWhiteSpace(value) ? value : throw new ArgumentException("JSON Lines path is empty; pass a .jsonl file or a folder of them");
    }

    /// <summary>
    /// The fields to take from each line's object, e.g. <c>["text"]</c>; each must hold a string. A
    /// dotted name such as <c>meta.title</c> reaches into nested objects unless the object has a key
    /// spelled exactly so.
    /// </summary>
    public required IReadOnlyList<string> Fields
    {
        get => fields;
        init => fields = value is { Count: > 0 } ? value : throw new ArgumentException("select at least one JSON field, e.g. [\"text\"]");
    }

    /// <summary>Optional new names for selected fields in the examples (selected name to output name).</summary>
    public IReadOnlyDictionary<string, string>? Rename { get; init; }

    /// <summary>Whether a malformed line stops reading (the default) or is skipped and counted.</summary>
    public ErrorPolicy OnError { get; init; } = ErrorPolicy.Fail;
}

/// <summary>
/// Streams examples from JSON Lines: one JSON object per line, of which the selected string fields
/// become an example. Blank lines are ignored. Each enumeration reads the files again from the start,
/// in ordinal order of their paths.
/// </summary>
public sealed class JsonLinesSource : IEnumerable<IReadOnlyDictionary<string, string>>
{
    private readonly IReadOnlyList<string> outputNames;
    private readonly string[][] paths;

    /// <summary>Checks the options and finds the files; nothing is parsed until enumeration.</summary>
    /// <param name="options">The files, fields and error policy.</param>
    /// <exception cref="ArgumentException">The field selection or rename map is inconsistent.</exception>
    /// <exception cref="FileNotFoundException">The path does not exist or the folder holds no JSON Lines files.</exception>
    public JsonLinesSource(JsonLinesSourceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        outputNames = SourceFiles.OutputNames(options.Fields, options.Rename, "JSON field");
        paths = [.. options.Fields.Select(f => f.Split('.'))];
        Options = options;
        Files = SourceFiles.Resolve(options.Path, "JSON Lines", [".jsonl", ".ndjson"]);
    }

    /// <summary>The options this source reads with.</summary>
    public JsonLinesSourceOptions Options { get; }

    /// <summary>The files read, in order.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>What the current or latest enumeration has read and skipped so far.</summary>
    public SourceStats Stats { get; private set; } = SourceStats.Empty;

    /// <summary>Malformed lines skipped by the current or latest enumeration (always 0 under <see cref="ErrorPolicy.Fail"/>).</summary>
    public long SkippedCount => Stats.Skipped;

    /// <summary>Reads the examples, one per non-blank line, with the selected fields under their output names.</summary>
    /// <returns>The examples in file and line order.</returns>
    /// <exception cref="DataFormatException">Under <see cref="ErrorPolicy.Fail"/>: a line is not a JSON object, or lacks a selected string field.</exception>
    public IEnumerator<IReadOnlyDictionary<string, string>> GetEnumerator()
    {
        Stats = SourceStats.Empty;
        foreach (string file in Files)
        {
            using var stream = OpenRead(file);
            long lineNumber = 0;
            foreach (var line in ByteLines.Read(stream))
            {
                lineNumber++;
                if (IsBlank(line.Span)) continue;
                var example = Parse(line, out string? problem);
                if (example is not null)
                {
                    Stats = Stats with { Examples = Stats.Examples + 1 };
                    yield return example;
                    continue;
                }
                string message = $"{file}:{lineNumber}: {problem}";
                if (Options.OnError == ErrorPolicy.Fail)
                    throw new DataFormatException(file, lineNumber, $"{problem}; fix the line, or set the source's on_error to skip to skip and count such lines");
                Stats = Stats with { Skipped = Stats.Skipped + 1, FirstProblem = Stats.FirstProblem ?? message };
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static FileStream OpenRead(string file)
    {
        try
        {
            return new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(file, null, $"cannot be read ({e.Message.ReplaceLineEndings(" ")}); check that it exists and is readable", e);
        }
    }

    /// <summary>Parses one line into an example, or returns null with the reason it is malformed.</summary>
    private Dictionary<string, string>? Parse(ReadOnlyMemory<byte> line, out string? problem)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            problem = $"not valid JSON ({TrimJsonMessage(e)})";
            return null;
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                problem = $"is a JSON {Kind(root.ValueKind)}, not an object; write one object per line, e.g. {{\"text\": \"...\"}}";
                return null;
            }
            var example = new Dictionary<string, string>(outputNames.Count, StringComparer.Ordinal);
            for (int i = 0; i < paths.Length; i++)
            {
                string field = Options.Fields[i];
                // A key that itself contains dots wins over the nested reading of the same name.
                if (!root.TryGetProperty(field, out var element) && !TryGetPath(root, paths[i], out element))
                {
                    problem = $"has no field '{field}' (fields here: {FieldList(root)})";
                    return null;
                }
                if (element.ValueKind != JsonValueKind.String)
                {
                    problem = $"field '{field}' is a JSON {Kind(element.ValueKind)}, not a string";
                    return null;
                }
                try
                {
                    example[outputNames[i]] = element.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    // The parser checks structure only; string contents are transcoded (and checked) here.
                    problem = $"field '{field}' is not valid UTF-8; re-encode the file as UTF-8";
                    return null;
                }
            }
            problem = null;
            return example;
        }
    }

    private static bool TryGetPath(JsonElement root, string[] path, out JsonElement element)
    {
        element = root;
        foreach (string part in path)
            if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(part, out element)) return false;
        return true;
    }

    private static string FieldList(JsonElement root)
    {
        string[] names = [.. root.EnumerateObject().Select(p => p.Name).Take(11)];
        if (names.Length == 0) return "none";
        return names.Length > 10 ? string.Join(", ", names.Take(10)) + ", ..." : string.Join(", ", names);
    }

    private static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value",
    };

    /// <summary>Drops System.Text.Json's "Path: $ | LineNumber: 0 | ..." suffix, which describes the line, not the file.</summary>
    private static string TrimJsonMessage(JsonException e)
    {
        string message = e.Message.ReplaceLineEndings(" ");
        int cut = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" LineNumber: ", StringComparison.Ordinal);
        message = (cut >= 0 ? message[..cut] : message).TrimEnd('.', ' ');
        return e.BytePositionInLine is { } at ? $"{message} at byte {at + 1}" : message;
    }

    private static bool IsBlank(ReadOnlySpan<byte> line)
    {
        foreach (byte b in line)
            if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r')) return false;
        return true;
    }
}
