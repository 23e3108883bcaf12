using Loom.Inference.Paging;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Paging;

public class PagedKvStoreTests
{
    private static readonly KvLayout Layout = new() { NumLayers = 2, NumKvHeads = 2, HeadDim = 3 };
    private const int BlockSize = 4;

    private static bool Same(Tensor actual, Tensor expected) =>
        actual.shape.SequenceEqual(expected.shape) && actual.eq(expected).all().item<bool>();

    [Fact]
    public void BatchedWritesAndGathersAgreeWithThePerSequenceOnes()
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(9);
        var allocator = new BlockAllocator(12, BlockSize, enablePrefixCaching: false);
        using var simple = new PagedKvStore(Layout, allocator.NumBlocks, BlockSize, device: null);
        using var batched = new PagedKvStore(Layout, allocator.NumBlocks, BlockSize, device: null);
        int[] lengths = [7, 1, 10];
        var tables = lengths.Select(n => { var t = new BlockTable(allocator); t.Append([.. Enumerable.Range(0, n)]); return t; }).ToArray();
        var k = lengths.Select(n => randn(new long[] { 2, n, 3 }, generator: generator)).ToArray(); // (Hkv, n, Dh)
        var v = lengths.Select(n => randn(new long[] { 2, n, 3 }, generator: generator)).ToArray();
        const int layer = 1;
        var blocks = new List<long>();
        var offsets = new List<long>();
        for (int b = 0; b < lengths.Length; b++)
        {
            simple.Write(layer, tables[b], 0, k[b], v[b]);
            for (int p = 0; p < lengths[b]; p++)
            {
                blocks.Add(tables[b].BlockIds[p / BlockSize]);
                offsets.Add(p % BlockSize);
            }
        }
        batched.WriteTokens(layer, tensor(blocks.ToArray()), tensor(offsets.ToArray()),
            cat(k.Select(x => x.permute(1, 0, 2)).ToArray(), 0), cat(v.Select(x => x.permute(1, 0, 2)).ToArray(), 0)); // (N, Hkv, Dh)

        int perRow = (lengths.Max() + BlockSize - 1) / BlockSize;
        var ids = tables.SelectMany(t => Enumerable.Range(0, perRow).Select(j => (long)t.BlockIds[Math.Min(j, t.BlockIds.Count - 1)])).ToArray();
        var (keys, values) = batched.GatherBatch(layer, tensor(ids, [lengths.Length, perRow]), lengths.Max()); // (B, Hkv, S, Dh)
        for (int b = 0; b < lengths.Length; b++)
        {
            var (sk, sv) = simple.Gather(layer, tables[b], lengths[b]);
            Assert.True(Same(keys[b].narrow(1, 0, lengths[b]), sk), $"row {b} keys differ");
            Assert.True(Same(values[b].narrow(1, 0, lengths[b]), sv), $"row {b} values differ");
        }
    }

    [Fact]
    public void TokenByTokenWritesGatherToTheTensorWritten()
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(7);
        var allocator = new BlockAllocator(6, BlockSize, enablePrefixCaching: true);
        using var store = new PagedKvStore(Layout, allocator.NumBlocks, BlockSize, device: null);
        var table = new BlockTable(allocator);
        var reference = Enumerable.Range(0, Layout.NumLayers)
            .Select(_ => (K: randn(new long[] { 2, 11, 3 }, generator: generator), V: randn(new long[] { 2, 11, 3 }, generator: generator))) // (Hkv, T, Dh)
            .ToArray();

        // A 5-token prefill crossing a block boundary, then one decode step per token.
        table.Append(new[] { 0, 1, 2, 3, 4 });
        for (int l = 0; l < Layout.NumLayers; l++)
            store.Write(l, table, 0, reference[l].K.narrow(1, 0, 5), reference[l].V.narrow(1, 0, 5));
        for (int t = 5; t < 11; t++)
        {
            table.Append(new[] { t });
            for (int l = 0; l < Layout.NumLayers; l++)
                store.Write(l, table, t, reference[l].K.narrow(1, t, 1), reference[l].V.narrow(1, t, 1));
        }

        Assert.Equal(3, table.BlockIds.Count);
        for (int l = 0; l < Layout.NumLayers; l++)
        {
            var (keys, values) = store.Gather(l, table, 11); // (Hkv, 11, Dh)
            Assert.True(keys.is_contiguous() && values.is_contiguous());
            Assert.True(Same(keys, reference[l].K), $"layer {l} keys differ");
            Assert.True(Same(values, reference[l].V), $"layer {l} values differ");
            var (firstKeys, _) = store.Gather(l, table, 6);
            Assert.True(Same(firstKeys, reference[l].K.narrow(1, 0, 6)));
        }
    }

    [Fact]
    public void ASequenceOnSharedPrefixBlocksGathersWhatAPrivateCopyWould()
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(11);
        var prompt = Enumerable.Range(50, 10).ToArray();
        var promptKeys = randn(new long[] { 2, 10, 3 }, generator: generator);   // (Hkv, T, Dh): what a model computes for the prompt
        var promptValues = randn(new long[] { 2, 10, 3 }, generator: generator);
        var continuation = randn(new long[] { 2, 3, 3 }, generator: generator);  // b's next three tokens

        var shared = new BlockAllocator(8, BlockSize, enablePrefixCaching: true);
        using var store = new PagedKvStore(Layout, shared.NumBlocks, BlockSize, device: null);
        var a = new BlockTable(shared);
        a.Append(prompt);
        store.Write(0, a, 0, promptKeys, promptValues);
        var b = new BlockTable(shared);
        b.Append(prompt);
        Assert.Equal(8, b.CachedTokenCount);
        store.Write(0, b, 8, promptKeys.narrow(1, 8, 2), promptValues.narrow(1, 8, 2)); // only the positions b computes
        b.Append(new[] { 1, 2, 3 });
        store.Write(0, b, 10, continuation, continuation);
        a.Append(new[] { 9 });
        store.Write(0, a, 10, zeros(2, 1, 3), zeros(2, 1, 3));                          // a diverges in its private tail

        var privateAllocator = new BlockAllocator(8, BlockSize, enablePrefixCaching: false);
        using var privateStore = new PagedKvStore(Layout, privateAllocator.NumBlocks, BlockSize, device: null);
        var copy = new BlockTable(privateAllocator);
        copy.Append([.. prompt, 1, 2, 3]);
        privateStore.Write(0, copy, 0, cat(new[] { promptKeys, continuation }, 1), cat(new[] { promptValues, continuation }, 1));

        var (sharedKeys, sharedValues) = store.Gather(0, b, 13);
        var (copyKeys, copyValues) = privateStore.Gather(0, copy, 13);
        Assert.True(Same(sharedKeys, copyKeys));
        Assert.True(Same(sharedValues, copyValues));
        var (aKeys, _) = store.Gather(0, a, 11);
        Assert.True(Same(aKeys.narrow(1, 0, 10), promptKeys)); // b's writes did not touch a
        Assert.True(Same(aKeys.narrow(1, 10, 1), zeros(2, 1, 3)));
    }

    [Fact]
    public void HoldsAllLayersOfEveryBlockAndFreesThemOnDispose()
    {
        // Tensor lifetimes are counted per thread, so other tests running in parallel do not disturb the count.
        var tensors = DisposeScopeManager.Statistics;
        long before = tensors.ThreadTotalLiveCount;
        var store = new PagedKvStore(Layout, 5, BlockSize, device: null);
        Assert.Equal(2L * 2 * 5 * 2 * BlockSize * 3 * sizeof(float), store.Bytes); // K and V, layers, blocks, heads, tokens, dims
        Assert.Equal(before + 2 * Layout.NumLayers, tensors.ThreadTotalLiveCount); // one K and one V pool per layer stay alive
        store.Dispose();
        Assert.Equal(before, tensors.ThreadTotalLiveCount); // and all of them are freed
    }

    [Fact]
    public void WritesAndGathersOutsideTheSequenceAreRefused()
    {
        using var scope = NewDisposeScope();
        var allocator = new BlockAllocator(4, BlockSize, enablePrefixCaching: true);
        using var store = new PagedKvStore(Layout, allocator.NumBlocks, BlockSize, device: null);
        var table = new BlockTable(allocator);
        table.Append(new[] { 1, 2, 3 });
        var three = zeros(2, 3, 3);

        Assert.Contains("append the tokens", Assert.Throws<ArgumentOutOfRangeException>(() => store.Write(0, table, 1, three, three)).Message);
        Assert.Contains("must be (kv heads = 2", Assert.Throws<ArgumentException>(() => store.Write(0, table, 0, zeros(1, 3, 3), zeros(1, 3, 3))).Message);
        Assert.Contains("must match keys", Assert.Throws<ArgumentException>(() => store.Write(0, table, 0, three, zeros(2, 2, 3))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Write(2, table, 0, three, three));
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Gather(0, table, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Gather(0, table, 0));
        var otherSize = new BlockTable(new BlockAllocator(4, 8, enablePrefixCaching: true));
        otherSize.Append(new[] { 1 });
        Assert.Contains("block size 8 differs", Assert.Throws<ArgumentException>(() => store.Gather(0, otherSize, 1)).Message);
        var bigger = new BlockTable(new BlockAllocator(9, BlockSize, enablePrefixCaching: true));
        bigger.Append(Enumerable.Range(0, 36).ToArray());
        Assert.Contains("outside the store's 4 blocks", Assert.Throws<InvalidOperationException>(() => store.Gather(0, bigger, 36)).Message);
    }
}
