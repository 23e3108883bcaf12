using System.Globalization;
using System.Text.Json;
using Loom.Core;
using static TorchSharp.torch;

namespace Loom.Models.Parallelism;

/// <summary>Where one tensor of a sharded set lives.</summary>
/// <param name="Shape">The whole tensor's shape.</param>
/// <param name="SplitDim">The dimension cut into equal parts, one per file in order; null when the tensor is whole in one file.</param>
/// <param name="Files">The files holding its parts, part 0 first (one file when not split).</param>
public sealed record ShardedTensorEntry(long[] Shape, int? SplitDim, IReadOnlyList<string> Files);

/// <summary>
/// A set of tensors written by the ranks of a model group, each rank one safetensors file
/// (<c>{stem}-0000R-of-0000M.safetensors</c>): a split tensor has one part in every file, a replicated one is written
/// once, in part 0's file. The entries (<see cref="ShardedTensorEntry"/>) are what the checkpoint index records;
/// <see cref="ReadWhole"/> puts the whole tensors back together, whatever mesh will use them next.
/// </summary>
public static class ShardedTensors
{
    /// <summary>The file that part <paramref name="part"/> of <paramref name="parts"/> writes.</summary>
    public static string FileName(string stem, int part, int parts) =>
        string.Create(CultureInfo.InvariantCulture, $"{stem}-{part:D5}-of-{parts:D5}.safetensors");

    /// <summary>
    /// Writes this rank's part: the local piece of every split tensor, and, in part 0 only, every replicated tensor.
    /// Returns the entries of the whole set (every rank computes the same: a split tensor's whole shape is its part's
    /// times <paramref name="parts"/> along the split dimension).
    /// </summary>
    /// <param name="directory">The checkpoint folder being written.</param>
    /// <param name="stem">The file stem ("model", "optimizer").</param>
    /// <param name="local">This rank's tensors by name.</param>
    /// <param name="splitDimOf">The split dimension of a tensor, or null when every rank holds it whole.</param>
    /// <param name="part">This rank's index on the model axis.</param>
    /// <param name="parts">Ranks on the model axis.</param>
    /// <param name="metadata">Safetensors metadata for the file.</param>
    public static IReadOnlyDictionary<string, ShardedTensorEntry> Write(string directory, string stem, IReadOnlyDictionary<string, Tensor> local,
        Func<string, int?> splitDimOf, int part, int parts, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(splitDimOf);
        var files = Enumerable.Range(0, parts).Select(p => FileName(stem, p, parts)).ToArray();
        var entries = new SortedDictionary<string, ShardedTensorEntry>(StringComparer.Ordinal);
        var mine = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in local)
        {
            var shape = tensor.shape.ToArray();
            if (splitDimOf(name) is int dim)
            {
                shape[dim] *= parts;
                entries[name] = new ShardedTensorEntry(shape, dim, files);
                mine[name] = tensor;
            }
            else
            {
                entries[name] = new ShardedTensorEntry(shape, null, [files[0]]);
                if (part == 0) mine[name] = tensor;
            }
        }
        SafeTensors.Save(Path.Combine(directory, files[part]), mine, metadata);
        return entries;
    }

    /// <summary>
    /// Reads the whole tensors of a set from its files in <paramref name="directory"/>, checking each file against the
    /// index: every listed part must be there with the shape the index implies, and no file may hold tensors the index
    /// does not list.
    /// </summary>
    /// <exception cref="InvalidDataException">A file is missing, or the index and the shards disagree; the message names the tensor and file.</exception>
    public static Dictionary<string, Tensor> ReadWhole(string directory, IReadOnlyDictionary<string, ShardedTensorEntry> entries, out IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(entries);
        var files = new Dictionary<string, Dictionary<string, Tensor>>(StringComparer.Ordinal);
        var fileMetadata = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        Dictionary<string, Tensor> Open(string file)
        {
            if (files.TryGetValue(file, out var open)) return open;
            string path = Path.Combine(directory, file);
            if (!File.Exists(path)) throw new InvalidDataException($"{directory}: the checkpoint index lists {file}, which is missing; the checkpoint is incomplete");
            files[file] = SafeTensors.Load(path, out var m);
            fileMetadata[file] = m;
            return files[file];
        }
        var whole = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var used = new HashSet<(string File, string Tensor)>();
        foreach (var (name, entry) in entries)
        {
            var pieces = new List<Tensor>();
            foreach (var file in entry.Files)
            {
                if (!Open(file).TryGetValue(name, out var piece))
                    throw new InvalidDataException($"{directory}: the checkpoint index does not match its shards: '{name}' is listed in {file} but not there");
                var expected = entry.Shape.ToArray();
                if (entry.SplitDim is int d) expected[d] /= entry.Files.Count;
                if (!piece.shape.SequenceEqual(expected))
                    throw new InvalidDataException($"{directory}: the checkpoint index does not match its shards: '{name}' in {file} has shape [{string.Join(", ", piece.shape)}], the index implies [{string.Join(", ", expected)}]");
                pieces.Add(piece);
                used.Add((file, name));
            }
            whole[name] = entry.SplitDim is int dim ? cat(pieces, dim) : pieces[0];
        }
        foreach (var (file, tensors) in files)
            foreach (var name in tensors.Keys)
                if (!used.Contains((file, name)))
                    throw new InvalidDataException($"{directory}: the checkpoint index does not match its shards: {file} holds '{name}', which the index does not list there");
        metadata = entries.Values.FirstOrDefault()?.Files[0] is { } first && fileMetadata.TryGetValue(first, out var m0) ? m0 : new Dictionary<string, string>();
        return whole;
    }

    /// <summary>Part <paramref name="part"/> of <paramref name="parts"/> of a whole tensor along <paramref name="dim"/> (a view).</summary>
    public static Tensor Part(Tensor whole, int dim, int part, int parts)
    {
        ArgumentNullException.ThrowIfNull(whole);
        long size = whole.shape[dim] / parts;
        return whole.narrow(dim, part * size, size);
    }
}

/// <summary>
/// The index of a sharded checkpoint (<c>checkpoint.index.json</c>): the mesh that wrote it and where every tensor of
/// the model and of the optimizer state lives. Written by rank 0 after every rank has written its files, just before
/// the commit marker.
/// </summary>
public sealed record CheckpointIndex
{
    /// <summary>The index file's name.</summary>
    public const string FileName = "checkpoint.index.json";

    /// <summary>The marker written last: a sharded checkpoint without it is incomplete and never loaded.</summary>
    public const string CommitMarker = "COMMITTED";

    /// <summary>The index format.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>The data axis of the mesh that wrote the checkpoint.</summary>
    public int MeshData { get; init; } = 1;

    /// <summary>The model axis of the mesh that wrote the checkpoint.</summary>
    public int MeshModel { get; init; } = 1;

    /// <summary>The model's tensors.</summary>
    public IReadOnlyDictionary<string, ShardedTensorEntry> Model { get; init; } = new Dictionary<string, ShardedTensorEntry>();

    /// <summary>The optimizer state's tensors (empty for a checkpoint written for inference).</summary>
    public IReadOnlyDictionary<string, ShardedTensorEntry> Optimizer { get; init; } = new Dictionary<string, ShardedTensorEntry>();

    /// <summary>Whether <paramref name="directory"/> holds a sharded checkpoint (an index).</summary>
    public static bool IsSharded(string directory) => File.Exists(Path.Combine(directory, FileName));

    /// <summary>Whether a checkpoint folder is complete: a whole one always (it was renamed into place when done), a sharded one once committed.</summary>
    public static bool IsCommitted(string directory) => !IsSharded(directory) || File.Exists(Path.Combine(directory, CommitMarker));

    /// <summary>Reads the index of <paramref name="directory"/>.</summary>
    /// <exception cref="InvalidDataException">The index is missing, corrupt, or the checkpoint was never committed.</exception>
    public static CheckpointIndex Read(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(Path.Combine(directory, CommitMarker)))
            throw new InvalidDataException($"{directory}: this sharded checkpoint was never committed (a rank stopped while writing it); load an earlier checkpoint");
        try
        {
            return JsonSerializer.Deserialize<CheckpointIndex>(File.ReadAllText(path), LoomJson.Options) ?? throw new InvalidDataException($"{path}: empty index");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: corrupt checkpoint index ({e.Message.Split('\n')[0]})", e);
        }
    }

    /// <summary>Writes the index into <paramref name="directory"/>.</summary>
    public void Write(string directory) =>
        File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(this, LoomJson.Options));
}
