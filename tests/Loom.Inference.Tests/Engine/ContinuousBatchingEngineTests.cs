using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Engine;

public class ContinuousBatchingEngineTests
{
    private static DecoderLm Model(PositionEncoding positions = PositionEncoding.Rotary, int kvHeads = 1) => Model(new DecoderLmOptions
    {
        VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = kvHeads, HeadDim = 8, MlpDim = 64,
        MaxSequenceLength = 64, Positions = positions,
    });

    private static DecoderLm Model(DecoderLmOptions options)
    {
        using var generator = new Generator(17);
        return new DecoderLm(options, generator: generator);
    }

    /// <summary>
    /// Gemma 2's options: scaled embeddings, (1 + w) norms, post-norms, a query scale and soft caps tight enough to
    /// change the scores, so that the paged engine's masked attention takes the written-out path.
    /// </summary>
    private static DecoderLm Gemma2Model() => Model(new DecoderLmOptions
    {
        VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 16, MlpDim = 64,
        MaxSequenceLength = 64, ParallelBlock = false, Activation = MlpActivation.GeGlu, SharedEmbeddings = true, ScaleSharedLogits = false,
        ScaleEmbeddings = true, NormUnitOffset = true, PostNorms = true, QueryPreAttnScalar = 24, AttentionLogitSoftcap = 1.5, FinalLogitSoftcap = 4,
    });

    [Fact]
    public async Task SoftCappedGemma2AttentionGivesTheSameGreedyTokensInTheEngineAsWithoutACache()
    {
        using var model = Gemma2Model();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, TokenBudget = 24, MaxRunning = 4 });
        var random = new Random(11);
        var requests = Enumerable.Range(0, 6).Select(i => new GenerationRequest(RandomPrompt(random, random.Next(1, 30)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 12), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        var reference = new TextGenerator(model, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        await WaitIdle(engine);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // Gemma 2's capped, rescaled scores, blockwise
    public async Task BlockwiseAttentionGivesTheSameGreedyTokensInTheEngineAsSdpaWithoutACache(bool gemma2)
    {
        using var sdpa = gemma2 ? Gemma2Model() : Model(kvHeads: 2);
        using var blockwise = Model((DecoderLmOptions)sdpa.Options with { AttentionImpl = AttentionImpl.Blockwise, AttentionBlockSize = 5 });
        using var engine = new ContinuousBatchingEngine(blockwise, Bytes, "tiny", new EngineOptions { BlockSize = 4, TokenBudget = 24, MaxRunning = 4 });
        var random = new Random(12);
        var requests = Enumerable.Range(0, 6).Select(i => new GenerationRequest(RandomPrompt(random, random.Next(1, 30)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 12), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        var reference = new TextGenerator(sdpa, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        await WaitIdle(engine);
    }

    private static readonly ByteVocabulary Bytes = new();

    private static int[] RandomPrompt(Random random, int length) => [.. Enumerable.Range(0, length).Select(_ => random.Next(0, 256))];

    private static async Task<List<int>> Collect(IGenerationEngine engine, GenerationRequest request, CancellationToken token = default)
    {
        var tokens = new List<int>();
        await foreach (var update in engine.GenerateAsync(request, token)) tokens.AddRange(update.Tokens);
        return tokens;
    }

    /// <summary>
    /// Waits until the engine has retired everything (it publishes its counts just after a request's
    /// stream ends); fails loudly if it never does.
    /// </summary>
    private static Task WaitIdle(ContinuousBatchingEngine engine) =>
        Eventually.UntilAsync(() => engine.Stats.Running == 0 && engine.Stats.Waiting == 0, "the engine has no running or waiting request");

    [Theory]
    [InlineData(PositionEncoding.Rotary, 1)]
    [InlineData(PositionEncoding.Learned, 2)]
    public async Task ManyConcurrentGreedyRequestsEqualEachDecodedAloneWithoutACache(PositionEncoding positions, int kvHeads)
    {
        using var model = Model(positions, kvHeads);
        // Small blocks, a small token budget and a small batch: prompts are prefilled in chunks, requests queue.
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, TokenBudget = 24, MaxRunning = 8 });
        var random = new Random(3);
        var requests = Enumerable.Range(0, 20).Select(i => new GenerationRequest(RandomPrompt(random, random.Next(1, 40)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 16), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        var reference = new TextGenerator(model, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        await WaitIdle(engine);
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
    }

    [Fact]
    public async Task PreemptedRequestsRecomputeAndStillEqualTheReference()
    {
        using var model = Model();
        // 16 blocks of 4 hold exactly one 64-token context: eight 50-token sequences cannot all fit.
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, NumBlocks = 16, TokenBudget = 64 });
        var random = new Random(5);
        var requests = Enumerable.Range(0, 8).Select(_ => new GenerationRequest(RandomPrompt(random, 20),
            new SamplingOptions { Temperature = 0, MaxTokens = 30, StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        Assert.True(engine.Preemptions > 0, "the pool was meant to run out");
        var reference = new TextGenerator(model, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        // Every prompt counts once, also those preempted mid-prefill (before their first token) and recomputed.
        await WaitIdle(engine);
        Assert.Equal(requests.Sum(r => r.Prompt.Count), engine.Stats.PromptTokensTotal);
        Assert.Equal(outputs.Sum(o => o.Count), engine.Stats.GeneratedTokensTotal);
    }

    [Fact]
    public async Task APromptPreemptedMidPrefillIsCountedOnce()
    {
        using var model = Model();
        // 16 blocks of 4 hold one 64-token context and prompts are prefilled 8 tokens a step: while the first
        // 50-token prompt decodes, it runs out of blocks and preempts the second in the middle of its prompt,
        // before that one has sampled a token; the second is recomputed once the first is done.
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, NumBlocks = 16, TokenBudget = 8 });
        var random = new Random(13);
        var requests = Enumerable.Range(0, 3).Select(_ => new GenerationRequest(RandomPrompt(random, 50),
            new SamplingOptions { Temperature = 0, MaxTokens = 6, StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        await WaitIdle(engine);
        Assert.True(engine.Preemptions > 0, "the pool was meant to run out");
        Assert.Equal(requests.Sum(r => r.Prompt.Count), engine.Stats.PromptTokensTotal);
        Assert.Equal(outputs.Sum(o => o.Count), engine.Stats.GeneratedTokensTotal);
        var reference = new TextGenerator(model, Bytes.EosId);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
    }

    [Fact]
    public async Task APromptSharingACachedPrefixReusesItsBlocks()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 8 });
        var random = new Random(7);
        int[] system = RandomPrompt(random, 33);
        var greedy = new SamplingOptions { Temperature = 0, MaxTokens = 5, StopAtEos = false };
        await Collect(engine, new GenerationRequest([.. system, 1, 2], greedy));
        Assert.Equal(0, engine.Stats.PrefixCacheHitTokens);
        var second = new GenerationRequest([.. system, 9, 9, 9], greedy);
        var output = await Collect(engine, second);
        Assert.Equal(32, engine.Stats.PrefixCacheHitTokens); // the 4 full blocks of the shared 33-token prefix
        Assert.Equal(new TextGenerator(model, Bytes.EosId).GenerateWithoutCache(second.Prompt, greedy).ToList(), output);
    }

    [Fact]
    public async Task NoBlockLeaksAfterAThousandRandomRequestsWithRandomCancellations()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, NumBlocks = 48, TokenBudget = 48, MaxRunning = 16, MaxQueue = 2000 });
        var random = new Random(11);
        int[][] prefixes = [RandomPrompt(random, 9), RandomPrompt(random, 17)];
        var tasks = new List<Task<(int CancelAfter, bool AskedToCancel, bool Cancelled, int Updates)>>();
        int cancelledBeforeStart = 0;
        for (int i = 0; i < 1000; i++)
        {
            int[] prompt = random.Next(3) == 0 ? [.. prefixes[random.Next(2)], .. RandomPrompt(random, random.Next(1, 6))] : RandomPrompt(random, random.Next(1, 24));
            var request = new GenerationRequest(prompt, new SamplingOptions { Temperature = random.Next(2), Seed = i, MaxTokens = random.Next(1, 10) });
            var cts = new CancellationTokenSource();
            int cancelAfter = random.Next(4) == 0 ? random.Next(0, 4) : -1; // a quarter are cancelled after 0..3 updates
            if (cancelAfter == 0) cancelledBeforeStart++;
            tasks.Add(Task.Run(async () =>
            {
                int seen = 0;
                bool asked = false;
                try
                {
                    if (cancelAfter == 0)
                    {
                        asked = true;
                        await cts.CancelAsync();
                    }
                    await foreach (var _ in engine.GenerateAsync(request, cts.Token))
                        if (++seen == cancelAfter)
                        {
                            asked = true;
                            await cts.CancelAsync();
                        }
                    return (cancelAfter, asked, false, seen);
                }
                catch (OperationCanceledException)
                {
                    return (cancelAfter, asked, true, seen);
                }
                finally
                {
                    cts.Dispose();
                }
            }));
            if (i % 50 == 0) await Task.Delay(1);
        }
        var results = await Task.WhenAll(tasks);
        await WaitIdle(engine);
        // Whatever the arrival order: a request ends cancelled exactly when its caller cancelled it, and
        // every request cancelled before it started (how many is fixed by the seed) ended cancelled.
        for (int i = 0; i < results.Length; i++)
            Assert.True(results[i].AskedToCancel == results[i].Cancelled, $"request {i}: cancelled {results[i].AskedToCancel}, ended cancelled {results[i].Cancelled}");
        Assert.True(cancelledBeforeStart > 0);
        Assert.Equal(cancelledBeforeStart, results.Count(r => r.CancelAfter == 0 && r.Cancelled));
        Assert.True(results.Count(r => r.CancelAfter > 0 && r.Cancelled) > 0, "no request was cancelled mid-stream");
        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(0, engine.Stats.Waiting);
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
    }

    [Fact]
    public async Task BadRequestsAreRefusedBeforeTheyQueue()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { MaxQueue = 1 });
        var tooLong = new GenerationRequest(new int[64]);
        await Assert.ThrowsAsync<ArgumentException>(async () => await Collect(engine, tooLong));
        Assert.Throws<ArgumentException>(() => new ContinuousBatchingEngine(model, Bytes, "tiny", new EngineOptions { BlockSize = 4, NumBlocks = 15 }));
    }
}
