using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Blockwise (online-softmax) attention computes what the fused kernel computes, alone and inside a model.</summary>
public sealed class BlockwiseAttentionTests
{
    private static void Close(Tensor expected, Tensor actual, double tolerance)
    {
        double difference = (expected - actual).abs().max().item<float>();
        Assert.True(difference <= tolerance, $"max difference {difference}");
    }

    [Theory]
    [InlineData(true, 4, 4, 13, 13, 4, 3)]   // causal, multi-head, T not a multiple of either block
    [InlineData(false, 4, 2, 13, 13, 5, 4)]  // all-to-all, grouped K/V heads
    [InlineData(true, 6, 2, 7, 19, 3, 5)]    // causal over a cached prefix of 12 keys (S > T), grouped
    [InlineData(true, 4, 1, 9, 9, 64, 64)]   // multi-query, one block holding everything
    [InlineData(false, 4, 1, 1, 17, 1, 4)]   // one decode step over 17 keys
    public void EqualsSdpaOnRandomInputs(bool causal, int heads, int kvHeads, int t, int s, int queryBlock, int keyBlock)
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(7);
        var q = randn([2, heads, t, 8], generator: g);   // (B, H, T, Dh)
        var k = randn([2, kvHeads, s, 8], generator: g); // (B, Hkv, S, Dh)
        var v = randn([2, kvHeads, s, 8], generator: g);
        var kx = Attention.ExpandKvHeads(k, heads);
        var vx = Attention.ExpandKvHeads(v, heads);
        // SDPA's is_causal aligns the mask top-left; blockwise puts the queries at the last T positions, as the cache's mask does.
        var expected = causal
            ? nn.functional.scaled_dot_product_attention(q, kx, vx, Attention.CausalMask(t, s - t, CPU))
            : nn.functional.scaled_dot_product_attention(q, kx, vx);
        var actual = BlockwiseAttention.Attend(q, k, v, null, causal, queryBlock, keyBlock, 1 / Math.Sqrt(8));
        Assert.Equal(expected.shape, actual.shape);
        Close(expected, actual, 1e-5);
    }

    [Fact]
    public void EqualsSdpaUnderABooleanMaskAndAnAdditiveOne()
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(8);
        var q = randn([2, 4, 11, 8], generator: g);
        var k = randn([2, 2, 11, 8], generator: g);
        var v = randn([2, 2, 11, 8], generator: g);
        // Two packed segments per row (split at 4 and 7), causal within each: (B, 1, T, S).
        var segments = stack([tensor(new long[] { 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1 }), tensor(new long[] { 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1 })]);
        var mask = (segments.unsqueeze(2) == segments.unsqueeze(1)).logical_and(Attention.CausalMask(11, 0, CPU)).unsqueeze(1);
        var expected = nn.functional.scaled_dot_product_attention(q, Attention.ExpandKvHeads(k, 4), Attention.ExpandKvHeads(v, 4), mask);
        Close(expected, BlockwiseAttention.Attend(q, k, v, mask, false, 3, 4, 1 / Math.Sqrt(8)), 1e-5);
        var bias = randn([11, 11], generator: g); // additive (T, S)
        var biased = nn.functional.scaled_dot_product_attention(q, Attention.ExpandKvHeads(k, 4), Attention.ExpandKvHeads(v, 4), bias);
        Close(biased, BlockwiseAttention.Attend(q, k, v, bias, false, 4, 3, 1 / Math.Sqrt(8)), 1e-5);
    }

    [Fact]
    public void EqualsTheWrittenOutPathWithSoftcapAndScale()
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(9);
        var q = randn([1, 4, 10, 8], generator: g) * 3;
        var k = randn([1, 2, 10, 8], generator: g) * 3;
        var v = randn([1, 2, 10, 8], generator: g);
        var inputs = new AttentionInputs(k, v, null, IsCausal: true);
        Close(Attention.Attend(q, inputs, 4, 0.2, 5.0), BlockwiseAttention.Attend(q, inputs, 3, 0.2, 5.0), 1e-5);
    }

    [Fact]
    public void FullyMaskedRowsComeOutAsZerosWithoutNaN()
    {
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(10);
        var q = randn([1, 2, 4, 8], generator: g);
        var k = randn([1, 2, 4, 8], generator: g);
        var mask = ones([4, 4], dtype: ScalarType.Bool);
        mask[2] = zeros(4, dtype: ScalarType.Bool); // query 2 sees nothing
        var y = BlockwiseAttention.Attend(q, k, k, mask, false, 2, 2, 1);
        Assert.False(y.isnan().any().item<bool>());
        Assert.Equal(0, y[.., .., 2].abs().max().item<float>());
    }

    private static DecoderLmOptions Tiny(AttentionImpl impl) => TinyModels.Decoder(kvHeads: 2) with { AttentionImpl = impl, AttentionBlockSize = 5 };

    [Fact]
    public void ATinyModelGivesTheSameLogitsAndGradients()
    {
        using var sdpa = Seeded.Model(Tiny(AttentionImpl.Sdpa), 11);
        using var blockwise = Seeded.Model(Tiny(AttentionImpl.Blockwise), 11);
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(12);
        var tokens = randint(0, 40, [2, 23], generator: g);
        var targets = randint(0, 40, [2, 23], generator: g);
        Tensor Loss(DecoderLm model) => nn.functional.cross_entropy(model.forward(tokens).view(-1, 40), targets.view(-1));
        Close(sdpa.forward(tokens), blockwise.forward(tokens), 1e-5);
        // Packed rows: the segment mask goes through the blockwise path too.
        var segments = stack([cat([zeros(10, int64), ones(13, int64)]), cat([zeros(3, int64), ones(20, int64)])]);
        var positions = stack([cat([arange(10L), arange(13L)]), cat([arange(3L), arange(20L)])]);
        var layout = new PackedLayout(segments, positions);
        Close(sdpa.Forward(tokens, layout), blockwise.Forward(tokens, layout), 1e-5);

        Loss(sdpa).backward();
        Loss(blockwise).backward();
        var expected = sdpa.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (name, parameter) in blockwise.named_parameters())
        {
            Assert.NotNull(parameter.grad);
            Assert.True(parameter.grad!.abs().sum().item<float>() > 0, $"{name} has no gradient");
            Close(expected[name], parameter.grad!, 1e-4);
        }
    }

    [Fact]
    public void CachedDecodingMatchesAFullForward()
    {
        using var model = Seeded.Model(Tiny(AttentionImpl.Blockwise), 13);
        using var scope = NewDisposeScope();
        using var g = Seeded.Generator(14);
        var tokens = randint(0, 40, [2, 12], generator: g);
        var full = model.forward(tokens);                              // (B, T, V)
        using var cache = KvCache.For(model, 2, 12);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 9));
        var steps = Enumerable.Range(9, 3).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToArray();
        Close(full.narrow(1, 0, 9), prefill, 1e-5);
        Close(full.narrow(1, 9, 3), cat(steps, 1), 1e-5);
    }

    [Fact]
    public void TheOptionIsValidatedAndRoundTripsThroughModelJson()
    {
        var options = Tiny(AttentionImpl.Blockwise);
        string json = JsonSerializer.Serialize<ModelOptions>(options, LoomJson.Options);
        Assert.Contains("\"attention_impl\": \"blockwise\"", json);
        Assert.Contains("\"attention_block_size\": 5", json);
        Assert.Equal(options, JsonSerializer.Deserialize<ModelOptions>(json, LoomJson.Options));
        // A model.json written before the option existed reads as sdpa.
        var old = JsonNode.Parse(JsonSerializer.Serialize<ModelOptions>(TinyModels.Decoder(), LoomJson.Options))!.AsObject();
        Assert.True(old.Remove("attention_impl") && old.Remove("attention_block_size"));
        var read = Assert.IsType<DecoderLmOptions>(JsonSerializer.Deserialize<ModelOptions>(old.ToJsonString(), LoomJson.Options));
        Assert.Equal(AttentionImpl.Sdpa, read.AttentionImpl);
        Assert.Contains("model.attention_block_size", Assert.Throws<ArgumentException>(() => (options with { AttentionBlockSize = 0 }).Validate()).Message);
        Assert.Contains("model.attention_impl", Assert.Throws<ArgumentException>(() => (options with { AttentionImpl = (AttentionImpl)7 }).Validate()).Message);
    }
}
