using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Loom.Data.Tasks;

namespace Loom.Data.Caching;

/// <summary>A new file written once, front to back, whose SHA-256 and size are computed while writing.</summary>
internal sealed class HashedFileWriter : IDisposable
{
    private readonly FileStream stream;
    private readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public HashedFileWriter(string path) =>
        stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);

    public long Bytes { get; private set; }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        stream.Write(bytes);
        hash.AppendData(bytes);
        Bytes += bytes.Length;
    }

    /// <summary>Flushes the file to the disk (not just the OS) and returns its SHA-256 in lowercase hex.</summary>
    public string Finish()
    {
        stream.Flush(flushToDisk: true);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        stream.Dispose();
        hash.Dispose();
    }
}

/// <summary>Writes one shard of a split: its tokens file and its index file (see <see cref="CachedShard"/>).</summary>
internal sealed class ShardWriter : IDisposable
{
    internal const int IndexEntryBytes = 16;
    private readonly HashedFileWriter tokens;
    private readonly HashedFileWriter index;
    private int[] bigEndianScratch = [];

    public ShardWriter(string directory, int shard, int shardCount)
    {
        TokensFile = TaskCache.ShardFileName(shard, shardCount, TaskCache.TokensExtension);
        IndexFile = TaskCache.ShardFileName(shard, shardCount, TaskCache.IndexExtension);
        tokens = new HashedFileWriter(Path.Combine(directory, TokensFile));
        try { index = new HashedFileWriter(Path.Combine(directory, IndexFile)); }
        catch { tokens.Dispose(); throw; }
    }

    public string TokensFile { get; }
    public string IndexFile { get; }
    public long Examples { get; private set; }
    public long Tokens { get; private set; }

    /// <summary>Appends an example's token features, in <paramref name="features"/> order; adds each one's length to <paramref name="featureTokens"/>.</summary>
    public void Write(Example example, IReadOnlyList<string> features, long[] featureTokens)
    {
        Span<byte> entry = stackalloc byte[IndexEntryBytes];
        for (int f = 0; f < features.Count; f++)
        {
            bool present = example.Tokens.TryGetValue(features[f], out int[]? ids);
            BinaryPrimitives.WriteInt64LittleEndian(entry, Tokens);
            BinaryPrimitives.WriteInt64LittleEndian(entry[8..], present ? ids!.Length : -1);
            index.Write(entry);
            if (!present) continue;
            WriteLittleEndian(ids!);
            Tokens += ids!.Length;
            featureTokens[f] += ids.Length;
        }
        Examples++;
    }

    private void WriteLittleEndian(int[] ids)
    {
        if (BitConverter.IsLittleEndian)
        {
            tokens.Write(MemoryMarshal.AsBytes(ids.AsSpan()));
            return;
        }
        if (bigEndianScratch.Length < ids.Length) bigEndianScratch = new int[ids.Length];
        var swapped = bigEndianScratch.AsSpan(0, ids.Length);
        BinaryPrimitives.ReverseEndianness(ids, swapped);
        tokens.Write(MemoryMarshal.AsBytes(swapped));
    }

    /// <summary>Flushes both files to the disk and describes the shard for the manifest.</summary>
    public CachedShard Finish()
    {
        string tokensSha = tokens.Finish();
        string indexSha = index.Finish();
        return new CachedShard(TokensFile, tokens.Bytes, tokensSha, IndexFile, index.Bytes, indexSha, Examples, Tokens);
    }

    public void Dispose()
    {
        tokens.Dispose();
        index.Dispose();
    }
}
