using System.Globalization;
using Loom.Data;
using Loom.Distributed;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

/// <summary>
/// Tensor-parallel serving: every rank splits the same seeded model by heads and MLP units; rank 0 runs the engine
/// (scheduler, sampling, outputs) on its shard for 20 concurrent requests, half greedy and half seeded sampling, while
/// the other ranks serve the model group. Rank 0 then serves the same requests with the whole model in one process and
/// checks every request got the same tokens.
/// </summary>
internal static class TensorParallelEngine
{
    private static readonly DecoderLmOptions Options = new()
    {
        VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 64,
    };

    private static readonly EngineOptions Engine = new() { BlockSize = 4, TokenBudget = 32, MaxRunning = 8, MaxQueue = 64 };

    private static DecoderLm Model()
    {
        using var generator = new Generator(17);
        return new DecoderLm(Options, generator: generator);
    }

    public static int Run()
    {
        using var world = Communicators.FromEnvironment();
        var vocabulary = new ByteVocabulary();
        using var model = Model();
        model.ShardForTensorParallel(world, PartitionRules.Default);
        if (world.Rank != 0)
        {
            ContinuousBatchingEngine.ServeModelGroup(model, vocabulary, Engine, world);
            Console.WriteLine($"OK rank {world.Rank} of {world.WorldSize}: served the model group until rank 0 stopped");
            return 0;
        }
        var random = new Random(5);
        var requests = Enumerable.Range(0, 20).Select(i => new GenerationRequest(
            [.. Enumerable.Range(0, random.Next(1, 30)).Select(_ => random.Next(0, 256))],
            i % 2 == 0
                ? new SamplingOptions { Temperature = 0, MaxTokens = random.Next(4, 16), StopAtEos = false }
                : new SamplingOptions { Temperature = 1, TopK = 40, TopP = 0.95, Seed = 100 + i, MaxTokens = random.Next(4, 16), StopAtEos = false })).ToList();
        List<int>[] split, single;
        using (var engine = new ContinuousBatchingEngine(model, vocabulary, "split", Engine, world))
            split = Task.WhenAll(requests.Select(r => Collect(engine, r))).GetAwaiter().GetResult();
        using (var whole = Model())
        using (var engine = new ContinuousBatchingEngine(whole, vocabulary, "whole", Engine))
            single = Task.WhenAll(requests.Select(r => Collect(engine, r))).GetAwaiter().GetResult();
        for (int i = 0; i < requests.Count; i++)
            if (!split[i].SequenceEqual(single[i]))
            {
                Console.Error.WriteLine($"FAIL request {i}: split model gave [{string.Join(", ", split[i])}], one process [{string.Join(", ", single[i])}]");
                return 1;
            }
        if (split.Any(s => s.Count == 0)) throw new InvalidDataException("a request generated nothing");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"OK rank 0 of {world.WorldSize}: {requests.Count} requests, {split.Sum(s => s.Count)} tokens equal to one process"));
        return 0;
    }

    private static async Task<List<int>> Collect(IGenerationEngine engine, GenerationRequest request)
    {
        var tokens = new List<int>();
        await foreach (var update in engine.GenerateAsync(request)) tokens.AddRange(update.Tokens);
        return tokens;
    }
}
