using System.Text.Json;
using Loom.Core;
using Loom.Data.Sources;

namespace Loom.Data.Tasks;

/// <summary>What kind of files a task file's source reads.</summary>
public enum TaskSourceType
{
    /// <summary>A text file or folder: one document per file (<see cref="TextFiles"/>).</summary>
    Text,

    /// <summary>JSON Lines: one document per line, from the first selected field.</summary>
    Jsonl,

    /// <summary>Parquet: one document per row, from the first selected column.</summary>
    Parquet,
}

/// <summary>The source section of a task file.</summary>
public sealed record TaskSourceSpec
{
    /// <summary>Kind of files.</summary>
    public TaskSourceType Type { get; init; } = TaskSourceType.Text;

    /// <summary>File or folder; relative paths are relative to the task file.</summary>
    public string Path { get; init; } = "";

    /// <summary>JSON fields or Parquet columns holding the text (the first is used).</summary>
    public IReadOnlyList<string> Fields { get; init; } = ["text"];

    /// <summary>Fraction of documents held out for validation (the last ones).</summary>
    public double ValidationFraction { get; init; } = 0.1;

    /// <summary>Whether malformed lines or rows stop reading (fail) or are skipped and counted (skip).</summary>
    public ErrorPolicy OnError { get; init; } = ErrorPolicy.Fail;
}

/// <summary>A task described as data in a JSON file: a name, a description and a source (language modelling on "targets").</summary>
public sealed record TaskFileSpec
{
    /// <summary>Registry name.</summary>
    public string Name { get; init; } = "";

    /// <summary>One line saying what the task is.</summary>
    public string Description { get; init; } = "";

    /// <summary>Where the text comes from.</summary>
    public TaskSourceSpec Source { get; init; } = new();
}

/// <summary>Reads task files (JSON with comments, snake_case keys; unknown keys refused) into <see cref="DataTask"/>s.</summary>
public static class TaskFile
{
    /// <summary>Loads a task file as a language-modelling task whose "targets" feature uses <paramref name="vocabulary"/>.</summary>
    /// <exception cref="ConfigException">The file is missing, malformed or names a missing source.</exception>
    public static DataTask Load(string path, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (!File.Exists(path)) throw new ConfigException($"task file not found: {path}");
        TaskFileSpec spec;
        try
        {
            spec = JsonSerializer.Deserialize<TaskFileSpec>(File.ReadAllText(path), LoomJson.Options)
                   ?? throw new ConfigException($"{path}: empty task file");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{path}: {e.Message.Split('\n')[0]} (path {e.Path})", e);
        }
        var s = spec.Source;
        string source = System.IO.Path.GetFullPath(s.Path, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        if (string.IsNullOrWhiteSpace(s.Path) || (!File.Exists(source) && !Directory.Exists(source)))
            throw new ConfigException($"{path}: source.path '{s.Path}' does not exist (relative paths are relative to the task file)");
        if (!(s.ValidationFraction > 0 && s.ValidationFraction < 1))
            throw new ConfigException($"{path}: source.validation_fraction = {s.ValidationFraction} must be between 0 and 1");
        if (s.Fields.Count == 0) throw new ConfigException($"{path}: source.fields is empty; name the field that holds the text");

        Func<TextCorpus> load = s.Type switch
        {
            TaskSourceType.Text => () => TextFiles.Load(source, s.ValidationFraction) with { Name = spec.Name },
            TaskSourceType.Jsonl => () => Split(spec.Name, new JsonLinesSource(new JsonLinesSourceOptions { Path = source, Fields = s.Fields, OnError = s.OnError }).Select(e => e[s.Fields[0]]), s.ValidationFraction),
            _ => () => Split(spec.Name, new ParquetSource(new ParquetSourceOptions { Path = source, Columns = s.Fields, OnError = s.OnError }).Select(e => e[s.Fields[0]]), s.ValidationFraction),
        };
        var targets = new Dictionary<string, OutputFeature> { ["targets"] = new(vocabulary) };
        return new DataTask(spec.Name, new TextCorpusSource(() => $"{s.Type}:{FileFingerprint.Of(source)}:fields={string.Join(",", s.Fields)}:validation={s.ValidationFraction}:on_error={s.OnError}", load),
            [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
            targets, description: spec.Description.Length > 0 ? spec.Description : $"{s.Type} documents from {s.Path}");
    }

    private static TextCorpus Split(string name, IEnumerable<string> documents, double validationFraction)
    {
        var all = documents.ToList();
        if (all.Count < 2) throw new InvalidDataException($"task '{name}' has {all.Count} documents; it needs at least 2 to hold one out");
        int held = Math.Clamp((int)Math.Round(all.Count * validationFraction), 1, all.Count - 1);
        return new TextCorpus(name, all.Take(all.Count - held).ToList(), all.Skip(all.Count - held).ToList());
    }
}
