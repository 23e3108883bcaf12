using Loom.Data;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Models.Quantization;
using Loom.Models.T5;

namespace Loom.Inference.Tests.Engine;

/// <summary>
/// The engines on a T5 encoder-decoder: the prompt goes to the encoder once per request, the decoder
/// starts from the pad id, and every request gets what it would get decoded alone without a cache.
/// </summary>
public class EncoderDecoderEngineTests
{
    private static readonly ByteVocabulary Bytes = new();

    /// <summary>A random t5-tiny-shaped model over bytes whose encoder takes, and decoder holds, 64 tokens.</summary>
    private static T5Model Model() => Seeded.Model(TinyModels.T5(Bytes.Size, 64), 29);

    private static int[] RandomPrompt(Random random, int length) => [.. Enumerable.Range(0, length).Select(_ => random.Next(0, 256))];

    private static TextGenerator Reference(LanguageModel model) => new(model, Bytes.EosId, Bytes.PadId);

    private static async Task<List<int>> Collect(IGenerationEngine engine, GenerationRequest request)
    {
        var tokens = new List<int>();
        await foreach (var update in engine.GenerateAsync(request)) tokens.AddRange(update.Tokens);
        return tokens;
    }

    private static Task WaitIdle(ContinuousBatchingEngine engine) =>
        Eventually.UntilAsync(() => engine.Stats.Running == 0 && engine.Stats.Waiting == 0, "the engine has no running or waiting request");

    [Fact]
    public async Task ManyConcurrentGreedyRequestsEqualEachDecodedAloneWithoutACache()
    {
        using var model = Model();
        // 16 blocks of 4 hold exactly one 64-token decoder sequence; 8 running requests of up to 41 decoder
        // tokens cannot all fit, so some are preempted (their encoder memory kept) and recomputed in chunks
        // of at most 8 tokens; the other 12 requests queue behind MaxRunning.
        using var engine = new ContinuousBatchingEngine(model, Bytes, "t5", new EngineOptions { BlockSize = 4, NumBlocks = 16, TokenBudget = 8, MaxRunning = 8 });
        var random = new Random(3);
        var requests = Enumerable.Range(0, 20).Select(_ => new GenerationRequest(RandomPrompt(random, random.Next(1, 65)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 41), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));

        var reference = Reference(model);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
        // The decoder starts from the same token for every request: only the encoder tells them apart.
        Assert.True(outputs.Where(o => o.Count >= 4).Select(o => string.Join(",", o.Take(4))).Distinct().Count() > 1, "every request decoded the same text: the encoder memory made no difference");
        await WaitIdle(engine);
        Assert.True(engine.Preemptions > 0, "the pool was meant to run out");
        Assert.Equal(requests.Count, engine.EncoderRuns); // once per request, preempted or not
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
        Assert.Equal(requests.Sum(r => r.Prompt.Count), engine.Stats.PromptTokensTotal);
        Assert.Equal(outputs.Sum(o => o.Count), engine.Stats.GeneratedTokensTotal);
    }

    [Fact]
    public async Task SeededSamplingThroughTheEngineEqualsTheSequentialEngineAndTheGenerator()
    {
        using var model = Model();
        using var batching = new ContinuousBatchingEngine(model, Bytes, "t5", new EngineOptions { BlockSize = 4, TokenBudget = 16, MaxRunning = 3 });
        using var sequential = new SequentialEngine(model, Bytes, "t5");
        var random = new Random(9);
        var requests = Enumerable.Range(0, 6).Select(i => new GenerationRequest(RandomPrompt(random, random.Next(1, 50)),
            new SamplingOptions { Temperature = 1.0, TopK = 40, TopP = 0.95, Seed = 100 + i, MaxTokens = random.Next(5, 25), StopAtEos = false })).ToList();
        var batched = await Task.WhenAll(requests.Select(r => Collect(batching, r)));

        var generator = Reference(model);
        for (int i = 0; i < requests.Count; i++)
        {
            var (prompt, sampling) = (requests[i].Prompt, requests[i].Sampling);
            Assert.Equal(generator.GenerateWithoutCache(prompt, sampling).ToList(), batched[i]);
            Assert.Equal(generator.Generate(prompt, sampling).ToList(), batched[i]);
            Assert.Equal(await Collect(sequential, requests[i]), batched[i]);
        }
        var otherSeed = new GenerationRequest(requests[0].Prompt, requests[0].Sampling with { Seed = 7 });
        Assert.NotEqual(batched[0], await Collect(batching, otherSeed));
        await WaitIdle(batching);
        Assert.Equal(requests.Count + 1, batching.EncoderRuns);
        Assert.Equal(0, batching.Stats.KvBlocksInUse);
    }

    [Fact]
    public void TheEngineDecoderGivesWhatTheReferenceDecoderGives()
    {
        using var model = Model();
        var random = new Random(13);
        var prompts = Enumerable.Range(0, 7).Select(_ => RandomPrompt(random, random.Next(1, 40))).ToList();
        var settings = new DecodeSettings(MaxTokens: 12, EosId: Bytes.EosId, StartId: Bytes.PadId, BatchSize: 3);
        var fast = new EngineSequenceDecoder(Bytes).Decode(model, prompts, settings);
        var reference = new ReferenceDecoder().Decode(model, prompts, settings);
        Assert.Equal(reference.Count, fast.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            Assert.Equal(reference[i].Tokens, fast[i].Tokens);
            Assert.Equal(reference[i].Finished, fast[i].Finished);
        }
    }

    [Fact]
    public async Task APromptAsLongAsTheEncoderIsServedAndALongerOneIsRefused()
    {
        using var model = Model();
        using var engine = new ContinuousBatchingEngine(model, Bytes, "t5", new EngineOptions { BlockSize = 8 });
        var random = new Random(17);
        // An encoder-decoder's prompt does not share the decoder's context: a 64-token prompt still leaves 63 tokens to decode.
        var full = new GenerationRequest(RandomPrompt(random, 64), new SamplingOptions { Temperature = 0, MaxTokens = 100, StopAtEos = false });
        var updates = new List<GenerationUpdate>();
        await foreach (var update in engine.GenerateAsync(full)) updates.Add(update);
        Assert.Equal(63, updates.Sum(u => u.Tokens.Count));
        Assert.Equal(FinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(Reference(model).GenerateWithoutCache(full.Prompt, full.Sampling).ToList(), updates.SelectMany(u => u.Tokens).ToList());
        await Assert.ThrowsAsync<ArgumentException>(async () => await Collect(engine, new GenerationRequest(new int[65])));
        await WaitIdle(engine);
        Assert.Equal(1, engine.EncoderRuns); // the refused prompt never reached the encoder
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
    }

    [Fact]
    public async Task AnInt8ModelThroughTheEngineEqualsItsOwnNoCacheDecoding()
    {
        using var model = Model();
        model.Quantize(QuantizationMode.Int8);
        using var engine = new ContinuousBatchingEngine(model, Bytes, "t5-int8", new EngineOptions { BlockSize = 4, TokenBudget = 16, MaxRunning = 4 });
        var random = new Random(19);
        var requests = Enumerable.Range(0, 6).Select(_ => new GenerationRequest(RandomPrompt(random, random.Next(1, 40)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(4, 16), StopAtEos = false })).ToList();
        var outputs = await Task.WhenAll(requests.Select(r => Collect(engine, r)));
        var reference = Reference(model);
        for (int i = 0; i < requests.Count; i++)
            Assert.Equal(reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList(), outputs[i]);
    }

    [Fact]
    public async Task CancelledAndFinishedRequestsFreeTheirBlocksAndLeaveTheOthersIntact()
    {
        using var model = Model();
        // A pool of one context and a small batch: requests preempt each other, finish at different
        // lengths and are cancelled before starting or mid-stream, while the rest must still decode right.
        using var engine = new ContinuousBatchingEngine(model, Bytes, "t5", new EngineOptions { BlockSize = 4, NumBlocks = 16, TokenBudget = 12, MaxRunning = 6, MaxQueue = 200 });
        var random = new Random(23);
        var requests = Enumerable.Range(0, 60).Select(_ => new GenerationRequest(RandomPrompt(random, random.Next(1, 65)),
            new SamplingOptions { Temperature = 0, MaxTokens = random.Next(1, 30), StopAtEos = false })).ToList();
        int[] cancelAfter = [.. requests.Select(_ => random.Next(4) == 0 ? random.Next(0, 3) : -1)]; // a quarter cancelled after 0..2 updates
        var results = await Task.WhenAll(requests.Select((request, i) => Task.Run(async () =>
        {
            using var cts = new CancellationTokenSource();
            if (cancelAfter[i] == 0) await cts.CancelAsync();
            var tokens = new List<int>();
            try
            {
                int seen = 0;
                await foreach (var update in engine.GenerateAsync(request, cts.Token))
                {
                    tokens.AddRange(update.Tokens);
                    if (++seen == cancelAfter[i]) await cts.CancelAsync();
                }
                return (Tokens: tokens, Cancelled: false);
            }
            catch (OperationCanceledException)
            {
                return (Tokens: tokens, Cancelled: true);
            }
        })));
        await WaitIdle(engine);
        Assert.Equal(0, engine.Stats.KvBlocksInUse);
        Assert.True(engine.EncoderRuns <= requests.Count, $"{engine.EncoderRuns} encoder runs for {requests.Count} requests");
        var reference = Reference(model);
        int completed = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var expected = reference.GenerateWithoutCache(requests[i].Prompt, requests[i].Sampling).ToList();
            if (results[i].Cancelled)
                Assert.Equal(expected.Take(results[i].Tokens.Count), results[i].Tokens); // what was streamed before the cancellation was right
            else
            {
                Assert.Equal(expected, results[i].Tokens);
                completed++;
            }
        }
        Assert.True(completed > requests.Count / 2, $"only {completed} of {requests.Count} requests completed");
        Assert.Contains(results, r => r.Cancelled);
    }
}
