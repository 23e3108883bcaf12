using Loom.Inference.Paging;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Paging;

public class KvBlockOptionsTests
{
    private static readonly KvLayout HalfPrecisionMqa = new() { NumLayers = 4, NumKvHeads = 1, HeadDim = 64, DType = ScalarType.Float16 };

    [Fact]
    public void DefaultsAreSixteenTokenBlocksWithPrefixCaching()
    {
        var options = new KvBlockOptions();
        Assert.Equal(16, options.BlockSize);
        Assert.True(options.EnablePrefixCaching);
        Assert.Null(options.NumBlocks);
        Assert.Null(options.MemoryBudgetBytes);
    }

    [Fact]
    public void InvalidFieldsAreRejectedWithTheirNames()
    {
        Assert.Contains("kv_cache.block_size = 0", Assert.Throws<ArgumentException>(() => new KvBlockOptions { BlockSize = 0 }).Message);
        Assert.Contains("kv_cache.num_blocks = -3", Assert.Throws<ArgumentException>(() => new KvBlockOptions { NumBlocks = -3 }).Message);
        Assert.Contains("kv_cache.memory_budget_bytes = 0", Assert.Throws<ArgumentException>(() => new KvBlockOptions { MemoryBudgetBytes = 0 }).Message);
        Assert.Contains("num_kv_heads = 0", Assert.Throws<ArgumentException>(() => new KvLayout { NumKvHeads = 0 }).Message);
        Assert.Contains("dtype Bool", Assert.Throws<ArgumentException>(() => new KvLayout { DType = ScalarType.Bool }).Message);
    }

    [Fact]
    public void BytesPerBlockCountsKeysAndValuesOfEveryLayer()
    {
        // 2 (K and V) * 4 layers * 1 kv head * 64 dims * 16 tokens * 2 bytes
        Assert.Equal(16_384, new KvBlockOptions().BytesPerBlock(HalfPrecisionMqa));
        Assert.Equal(2L * 4 * 1 * 64 * 8 * 4, new KvBlockOptions { BlockSize = 8 }.BytesPerBlock(HalfPrecisionMqa with { DType = ScalarType.Float32 }));
    }

    [Fact]
    public void TheBlockCountIsGivenOrDerivedFromTheBudget()
    {
        Assert.Equal(12, new KvBlockOptions { NumBlocks = 12 }.ResolveNumBlocks(HalfPrecisionMqa));
        Assert.Equal(6, new KvBlockOptions { MemoryBudgetBytes = 100_000 }.ResolveNumBlocks(HalfPrecisionMqa)); // 100000 / 16384 = 6.1
        Assert.Equal(1, new KvBlockOptions { MemoryBudgetBytes = 16_384 }.ResolveNumBlocks(HalfPrecisionMqa));

        var layout = KvLayout.For(new KvCacheShape(NumLayers: 2, NumKvHeads: 2, HeadDim: 8), ScalarType.BFloat16);
        Assert.Equal((2, 2, 8, 2), (layout.NumLayers, layout.NumKvHeads, layout.HeadDim, layout.ElementBytes));
        Assert.Equal(10, new KvBlockOptions { BlockSize = 4, MemoryBudgetBytes = 10 * 512 + 511 }.ResolveNumBlocks(layout)); // 2*2*2*8*4*2 = 512 bytes a block
    }

    [Fact]
    public void ResolvingNeedsExactlyOneSizeAndAtLeastOneBlock()
    {
        Assert.Contains("set num_blocks or memory_budget_bytes", Assert.Throws<ArgumentException>(() => new KvBlockOptions().ResolveNumBlocks(HalfPrecisionMqa)).Message);
        Assert.Contains("not both", Assert.Throws<ArgumentException>(() => new KvBlockOptions { NumBlocks = 2, MemoryBudgetBytes = 1 << 20 }.ResolveNumBlocks(HalfPrecisionMqa)).Message);
        Assert.Contains("holds no block of 16384 bytes", Assert.Throws<ArgumentException>(() => new KvBlockOptions { MemoryBudgetBytes = 16_383 }.ResolveNumBlocks(HalfPrecisionMqa)).Message);
    }

    [Fact]
    public void AllocatorAndStoreBuiltFromTheOptionsAgreeWithTheBudget()
    {
        var layout = new KvLayout { NumLayers = 2, NumKvHeads = 1, HeadDim = 4 };
        var options = new KvBlockOptions { BlockSize = 4, MemoryBudgetBytes = 3000, EnablePrefixCaching = false };
        var allocator = new BlockAllocator(options, layout);
        using var store = new PagedKvStore(options, layout, device: null);
        Assert.Equal(11, allocator.NumBlocks); // 3000 / (2*2*1*4*4*4 = 256)
        Assert.Equal(11, store.NumBlocks);
        Assert.False(allocator.PrefixCachingEnabled);
        Assert.Equal(11 * options.BytesPerBlock(layout), store.Bytes);
    }
}
