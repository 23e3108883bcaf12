using System.Text.Json.Serialization;

namespace Loom.Data.Caching;

/// <summary>
/// The <c>manifest.json</c> of one cached split. It is written last, so a folder without it is an
/// unfinished build; every other file of the split is named, sized and checksummed here.
/// </summary>
/// <param name="Format">File format version (<see cref="TaskCache.FormatVersion"/>); readers refuse other versions.</param>
/// <param name="Task">The task's name.</param>
/// <param name="Split">The split.</param>
/// <param name="TaskFingerprint">The task's <see cref="Loom.Data.Tasks.DataTask.Fingerprint"/> when the cache was built.</param>
/// <param name="Seed">The seed the pipeline ran with (random preprocessors depend on it).</param>
/// <param name="Examples">Examples in the split.</param>
/// <param name="Features">The cached token features, in index order (sorted by name, ordinal).</param>
/// <param name="ShardCount">Number of shards; example i is in shard i mod ShardCount, at position i / ShardCount.</param>
/// <param name="Shards">The shards, in order.</param>
public sealed record TaskCacheManifest(
    int Format, string Task, string Split, string TaskFingerprint, ulong Seed, long Examples,
    IReadOnlyList<CachedFeature> Features, int ShardCount, IReadOnlyList<CachedShard> Shards)
{
    /// <summary>Tokens of all features in all examples.</summary>
    [JsonIgnore]
    public long Tokens => Features.Sum(f => f.Tokens);

    /// <summary>Bytes of all shard files (tokens and index), without the manifest.</summary>
    [JsonIgnore]
    public long Bytes => Shards.Sum(s => s.TokensBytes + s.IndexBytes);
}

/// <summary>One cached token feature.</summary>
/// <param name="Name">Feature name, e.g. <c>targets</c>.</param>
/// <param name="Vocabulary">The vocabulary's name, for messages.</param>
/// <param name="VocabularyFingerprint">The vocabulary's <see cref="Loom.Data.VocabularyFingerprint"/>; readers refuse another.</param>
/// <param name="Tokens">Tokens of this feature in all examples.</param>
public sealed record CachedFeature(string Name, string Vocabulary, string VocabularyFingerprint, long Tokens);

/// <summary>
/// One shard: a tokens file (little-endian int32 tokens of its examples' features, concatenated in
/// example then feature order) and an index file (per example, per feature: offset in tokens and
/// length as little-endian int64; length -1 marks a feature the example lacks).
/// </summary>
/// <param name="TokensFile">Tokens file name, e.g. <c>shard-00000-of-00004.tokens</c>.</param>
/// <param name="TokensBytes">Its size: 4 bytes per token.</param>
/// <param name="TokensSha256">Its SHA-256, lowercase hex.</param>
/// <param name="IndexFile">Index file name, e.g. <c>shard-00000-of-00004.index</c>.</param>
/// <param name="IndexBytes">Its size: 16 bytes per example and feature.</param>
/// <param name="IndexSha256">Its SHA-256, lowercase hex.</param>
/// <param name="Examples">Examples in the shard.</param>
/// <param name="Tokens">Tokens in the shard.</param>
public sealed record CachedShard(
    string TokensFile, long TokensBytes, string TokensSha256,
    string IndexFile, long IndexBytes, string IndexSha256, long Examples, long Tokens);

/// <summary>Where a split was cached and what its manifest says.</summary>
/// <param name="Directory">The split's folder, <c>ROOT/TASK/SPLIT</c>.</param>
/// <param name="Manifest">Its manifest.</param>
public sealed record CachedSplitInfo(string Directory, TaskCacheManifest Manifest);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(TaskCacheManifest))]
internal sealed partial class TaskCacheManifestJson : JsonSerializerContext;
