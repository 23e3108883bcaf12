using System.Collections;
using Parquet;
using Parquet.Schema;

namespace Loom.Data.Sources;

/// <summary>Which Parquet file(s) to read and which string columns to take from each row.</summary>
public sealed record ParquetSourceOptions
{
    private readonly string path = "";
    private readonly IReadOnlyList<string> columns = [];

    /// <summary>A <c>.parquet</c> file, or a folder searched recursively for them.</summary>
    public required string Path
    {
        get => path;
        init => path = !string.IsNullOrWhiteSpace(value) ? value : throw new ArgumentException("Parquet path is empty; pass a .parquet file or a folder of them");
    }

    /// <summary>The string columns to take from each row, e.g. <c>["text"]</c>; nested columns by their dotted path.</summary>
    public required IReadOnlyList<string> Columns
    {
        get => columns;
        init => columns = value is { Count: > 0 } ? value : throw new ArgumentException("select at least one Parquet column, e.g. [\"text\"]");
    }

    /// <summary>Optional new names for selected columns in the examples (column name to output name).</summary>
    public IReadOnlyDictionary<string, string>? Rename { get; init; }

    /// <summary>
    /// Whether a malformed row (a null value) or an unreadable file stops reading (the default) or is
    /// skipped and counted. A missing or non-string column always stops: it is a selection mistake,
    /// not bad data.
    /// </summary>
    public ErrorPolicy OnError { get; init; } = ErrorPolicy.Fail;
}

/// <summary>
/// Streams examples from Parquet files with Parquet.Net, one row group in memory at a time: each row's
/// selected string columns become an example. Each enumeration reads the files again, in ordinal
/// order of their paths.
/// </summary>
public sealed class ParquetSource : IEnumerable<IReadOnlyDictionary<string, string>>
{
    private readonly IReadOnlyList<string> outputNames;

    /// <summary>Checks the options and finds the files; nothing is read until enumeration.</summary>
    /// <param name="options">The files, columns and error policy.</param>
    /// <exception cref="ArgumentException">The column selection or rename map is inconsistent.</exception>
    /// <exception cref="FileNotFoundException">The path does not exist or the folder holds no Parquet files.</exception>
    public ParquetSource(ParquetSourceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        outputNames = SourceFiles.OutputNames(options.Columns, options.Rename, "Parquet column");
        Options = options;
        Files = SourceFiles.Resolve(options.Path, "Parquet", [".parquet"]);
    }

    /// <summary>The options this source reads with.</summary>
    public ParquetSourceOptions Options { get; }

    /// <summary>The files read, in order.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>What the current or latest enumeration has read and skipped so far.</summary>
    public SourceStats Stats { get; private set; } = SourceStats.Empty;

    /// <summary>Rows (and unreadable files) skipped by the current or latest enumeration.</summary>
    public long SkippedCount => Stats.Skipped;

    /// <summary>Reads the examples, one per row, with the selected columns under their output names.</summary>
    /// <returns>The examples in file and row order.</returns>
    /// <exception cref="DataFormatException">
    /// A selected column is missing or not a string column; or, under <see cref="ErrorPolicy.Fail"/>, a
    /// file is not readable Parquet or a selected value is null.
    /// </exception>
    public IEnumerator<IReadOnlyDictionary<string, string>> GetEnumerator()
    {
        Stats = SourceStats.Empty;
        foreach (string file in Files)
        {
            using var stream = Open(file);
            if (stream is null) continue;
            var reader = OpenReader(file, stream);
            if (reader is null) continue;
            try
            {
                var fields = SelectFields(file, reader.Schema);
                long rowBase = 0;
                for (int group = 0; group < reader.RowGroupCount; group++)
                {
                    var values = ReadRowGroup(file, reader, group, fields, out long rows);
                    if (values is null) break; // a damaged row group under Skip: the rest of the file is not trusted either
                    for (int row = 0; row < rows; row++)
                    {
                        var example = new Dictionary<string, string>(fields.Length, StringComparer.Ordinal);
                        string? nullColumn = null;
                        for (int c = 0; c < fields.Length; c++)
                        {
                            string? value = values[c][row];
                            if (value is null) { nullColumn = Options.Columns[c]; break; }
                            example[outputNames[c]] = value;
                        }
                        if (nullColumn is not null)
                        {
                            Problem(file, $"row {rowBase + row + 1}: column '{nullColumn}' is null; fill it, or set the source's on_error to skip to skip and count such rows");
                            continue;
                        }
                        Stats = Stats with { Examples = Stats.Examples + 1 };
                        yield return example;
                    }
                    rowBase += rows;
                }
            }
            finally
            {
                // ParquetReader is only IAsyncDisposable; this enumerator is synchronous.
                reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private FileStream? Open(string file)
    {
        try
        {
            return new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Problem(file, $"cannot be read ({e.Message.ReplaceLineEndings(" ")}); check that it exists and is readable", e);
            return null;
        }
    }

    private ParquetReader? OpenReader(string file, Stream stream)
    {
        try
        {
            return ParquetReader.CreateAsync(stream, leaveStreamOpen: true).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Parquet.Net reports damage with a variety of exception types (IOException, InvalidDataException, Thrift errors...).
            Problem(file, $"is not a readable Parquet file ({OneLine(e)}); check that it was written completely, or re-export it", e);
            return null;
        }
    }

    private DataField[] SelectFields(string file, ParquetSchema schema)
    {
        var available = schema.GetDataFields();
        var selected = new DataField[Options.Columns.Count];
        for (int i = 0; i < selected.Length; i++)
        {
            string name = Options.Columns[i];
            var field = available.FirstOrDefault(f => f.Path.ToString() == name) ?? available.FirstOrDefault(f => f.Name == name);
            string list = string.Join(", ", available.Select(f => f.Path.ToString()));
            // Selection mistakes are not bad data, so they stop reading whatever the error policy.
            if (field is null)
                throw new DataFormatException(file, null, $"has no column '{name}' (columns: {list}); select one of those");
            // Parquet.Net 6 exposes UTF-8 string columns as ReadOnlyMemory<char>; raw binary columns have another type.
            if (!(field.ClrType == typeof(string) || field.ClrType == typeof(ReadOnlyMemory<char>)) || field.IsArray)
                throw new DataFormatException(file, null, $"column '{name}' holds {(field.IsArray ? "lists of " : "")}{TypeName(field.ClrType)}, not strings; select a string column (columns: {list})");
            selected[i] = field;
        }
        return selected;
    }

    private string?[][]? ReadRowGroup(string file, ParquetReader reader, int group, DataField[] fields, out long rows)
    {
        rows = 0;
        try
        {
            using var rowGroup = reader.OpenRowGroupReader(group);
            rows = rowGroup.RowCount;
            var values = new string?[fields.Length][];
            for (int c = 0; c < fields.Length; c++)
            {
                values[c] = new string?[rows];
                rowGroup.ReadAsync(fields[c], values[c].AsMemory()!, null).GetAwaiter().GetResult();
            }
            return values;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Problem(file, $"row group {group + 1} of {reader.RowGroupCount} is not readable ({OneLine(e)}); check that the file was written completely, or re-export it", e);
            return null;
        }
    }

    /// <summary>Throws under <see cref="ErrorPolicy.Fail"/>; otherwise counts the skip and keeps the first message.</summary>
    private void Problem(string file, string problem, Exception? inner = null)
    {
        var exception = new DataFormatException(file, null, problem, inner);
        if (Options.OnError == ErrorPolicy.Fail) throw exception;
        Stats = Stats with { Skipped = Stats.Skipped + 1, FirstProblem = Stats.FirstProblem ?? exception.Message };
    }

    private static string TypeName(Type type) =>
        type.IsGenericType ? $"{type.Name[..type.Name.IndexOf('`', StringComparison.Ordinal)]}<{string.Join(", ", type.GetGenericArguments().Select(TypeName))}>" : type.Name;

    private static string OneLine(Exception e) => e.Message.ReplaceLineEndings(" ").TrimEnd('.', ' ');
}
