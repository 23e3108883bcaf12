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

/// <summary>
/// A task or a mixture described as data in a JSON file. A task has a name, a description and a
/// source (language modelling on "targets"); a mixture has a name and components instead of a source.
/// </summary>
public sealed record TaskFileSpec
{
    /// <summary>Registry name.</summary>
    public string Name { get; init; } = "";

    /// <summary>One line saying what the task is.</summary>
    public string Description { get; init; } = "";

    /// <summary>Where the text comes from (tasks only).</summary>
    public TaskSourceSpec? Source { get; init; }

    /// <summary>The tasks or mixtures mixed, with their rates (mixtures only).</summary>
    public IReadOnlyList<MixtureComponent>? Components { get; init; }

    /// <summary>How a mixture weighs its components: explicit (the default), examples or size.</summary>
    public MixtureRateKind RateBy { get; init; } = MixtureRateKind.Explicit;

    /// <summary>With rate_by = examples, the cap on each component's count.</summary>
    public long? MaximumExamples { get; init; }
}

/// <summary>
/// Reads task and mixture files (JSON with comments, snake_case keys; unknown keys refused) into
/// <see cref="DataTask"/>s and <see cref="Mixture"/>s.
/// </summary>
public static class TaskFile
{
    /// <summary>Loads a task file as a language-modelling task whose "targets" feature uses <paramref name="vocabulary"/>.</summary>
    /// <exception cref="ConfigException">The file is missing or malformed, names a missing source, or describes a mixture.</exception>
    public static DataTask Load(string path, IVocabulary vocabulary)
    {
        var spec = Read(path);
        if (spec.Source is null)
            throw new ConfigException($"{path}: describes a mixture, not a task; register its folder with --task-dir and train with --mixture {spec.Name}");
        var task = ToTask(path, spec, vocabulary);
        CheckSource(path, spec.Source);
        return task;
    }

    /// <summary>
    /// Registers every task and mixture file (*.json) in <paramref name="folder"/> (not recursive):
    /// tasks first, then mixtures, each once the tasks and mixtures it names are registered. A task's
    /// source is checked when it is first read, so a folder can describe data that is not there yet.
    /// </summary>
    /// <returns>The registry.</returns>
    /// <exception cref="ConfigException">A file is malformed, a name is taken, or a mixture names an unknown component.</exception>
    public static TaskRegistry AddFolder(TaskRegistry registry, string folder, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (!Directory.Exists(folder)) throw new ConfigException($"task folder not found: {folder}");
        var pending = new List<(string Path, TaskFileSpec Spec)>();
        foreach (string file in Directory.EnumerateFiles(folder, "*.json").Order(StringComparer.Ordinal))
        {
            var spec = Read(file);
            if (spec.Source is not null) Register(file, () => registry.Add(ToTask(file, spec, vocabulary)));
            else pending.Add((file, spec));
        }
        // Mixtures may name mixtures of the same folder: add whichever are ready until none is left.
        while (pending.Count > 0)
        {
            var ready = pending.FindIndex(p => p.Spec.Components!.All(c => registry.HasTask(c.Name) || registry.HasMixture(c.Name)));
            var (file, spec) = pending[Math.Max(ready, 0)];
            Register(file, () => registry.Add(ToMixture(file, spec))); // with none ready, this reports the unknown component
            pending.RemoveAt(Math.Max(ready, 0));
        }
        return registry;
    }

    private static void Register(string file, Action add)
    {
        try
        {
            add();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"{file}: {e.Message}", e);
        }
    }

    private static TaskFileSpec Read(string path)
    {
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
        if ((spec.Source is null) == (spec.Components is null))
            throw new ConfigException($"{path}: give either \"source\" (a task) or \"components\" (a mixture)");
        return spec;
    }

    private static Mixture ToMixture(string path, TaskFileSpec spec)
    {
        try
        {
            return new Mixture(spec.Name, spec.Components!, spec.RateBy, spec.MaximumExamples, spec.Description);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }
    }

    private static string SourcePath(string path, TaskSourceSpec s) =>
        System.IO.Path.GetFullPath(s.Path, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);

    private static void CheckSource(string path, TaskSourceSpec s)
    {
        string source = SourcePath(path, s);
        if (string.IsNullOrWhiteSpace(s.Path) || (!File.Exists(source) && !Directory.Exists(source)))
            throw new ConfigException($"{path}: source.path '{s.Path}' does not exist (relative paths are relative to the task file)");
    }

    private static DataTask ToTask(string path, TaskFileSpec spec, IVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        var s = spec.Source!;
        string source = SourcePath(path, s);
        if (!(s.ValidationFraction > 0 && s.ValidationFraction < 1))
            throw new ConfigException($"{path}: source.validation_fraction = {s.ValidationFraction} must be between 0 and 1");
        if (s.Fields.Count == 0) throw new ConfigException($"{path}: source.fields is empty; name the field that holds the text");

        Func<TextCorpus> read = s.Type switch
        {
            TaskSourceType.Text => () => TextFiles.Load(source, s.ValidationFraction) with { Name = spec.Name },
            TaskSourceType.Jsonl => () => Split(spec.Name, new JsonLinesSource(new JsonLinesSourceOptions { Path = source, Fields = s.Fields, OnError = s.OnError }).Select(e => e[s.Fields[0]]), s.ValidationFraction),
            _ => () => Split(spec.Name, new ParquetSource(new ParquetSourceOptions { Path = source, Columns = s.Fields, OnError = s.OnError }).Select(e => e[s.Fields[0]]), s.ValidationFraction),
        };
        TextCorpus Load()
        {
            CheckSource(path, s);
            return read();
        }
        var targets = new Dictionary<string, OutputFeature> { ["targets"] = new(vocabulary) };
        try
        {
            return new DataTask(spec.Name, new TextCorpusSource(() => $"{s.Type}:{FileFingerprint.Of(source)}:fields={string.Join(",", s.Fields)}:validation={s.ValidationFraction}:on_error={s.OnError}", Load),
                [ExamplePreprocessors.Rekey(new Dictionary<string, string> { ["targets"] = "text" }), ExamplePreprocessors.Tokenize],
                targets, description: spec.Description.Length > 0 ? spec.Description : $"{s.Type} documents from {s.Path}");
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }
    }

    private static TextCorpus Split(string name, IEnumerable<string> documents, double validationFraction)
    {
        var all = documents.ToList();
        if (all.Count < 2) throw new InvalidDataException($"task '{name}' has {all.Count} documents; it needs at least 2 to hold one out");
        int held = Math.Clamp((int)Math.Round(all.Count * validationFraction), 1, all.Count - 1);
        return new TextCorpus(name, all.Take(all.Count - held).ToList(), all.Skip(all.Count - held).ToList());
    }
}
