using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Loom.Inference.Paging;

/// <summary>
/// Identity of a full block's contents: a hash of the previous block's hash and this block's token
/// ids, so equal hashes mean equal whole prefixes, not just equal blocks (vLLM). SHA-256 cut to 128
/// bits makes an accidental collision (which would hand a sequence someone else's keys) negligible;
/// the hash never leaves the process, so host byte order is fine.
/// </summary>
internal readonly record struct BlockHash(ulong High, ulong Low)
{
    /// <summary>The parent of a sequence's first block.</summary>
    public static BlockHash Root => default;

    /// <summary>
    /// The parent of the first block of a sequence whose keys and values also depend on <paramref name="key"/> (its images):
    /// its blocks never match those of a sequence with other images, or with none.
    /// </summary>
    public static BlockHash RootOf(ReadOnlySpan<byte> key)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(key, digest);
        return MemoryMarshal.Read<BlockHash>(digest);
    }

    /// <summary>The hash of a full block holding <paramref name="tokens"/> after the prefix that <paramref name="parent"/> identifies.</summary>
    public static BlockHash Of(BlockHash parent, ReadOnlySpan<int> tokens)
    {
        var tokenBytes = MemoryMarshal.AsBytes(tokens);
        int length = 2 * sizeof(ulong) + tokenBytes.Length;
        Span<byte> input = length <= 1024 ? stackalloc byte[length] : new byte[length];
        MemoryMarshal.Write(input, in parent);
        tokenBytes.CopyTo(input[(2 * sizeof(ulong))..]);
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(input, digest);
        return MemoryMarshal.Read<BlockHash>(digest);
    }
}
