using System.Diagnostics;
using System.Globalization;
using Loom.Distributed;
using Loom.Models;
using Loom.Models.Parallelism;
using Loom.Training;
using TorchSharp;
using static TorchSharp.torch;

// Usage: Loom.Distributed.TestHost collectives | nccl-missing | checkpoint-killed RUN_DIR | tp-engine
// Prints one "OK rank R of W ..." line and exits 0 when every check holds; otherwise prints the first
// mismatch to standard error and exits 1.
torch.set_num_threads(1);
string command = args.Length > 0 ? args[0] : "collectives";
try
{
    switch (command)
    {
        case "collectives":
            using (var communicator = Communicators.FromEnvironment())
            {
                int checks = Collectives.Run(communicator);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"OK rank {communicator.Rank} of {communicator.WorldSize} ({communicator.Backend}): {checks} checks"));
            }
            return 0;
        case "nccl-missing":
            try
            {
                using var nccl = Communicators.FromEnvironment(new Device(DeviceType.CUDA, 0));
                Console.WriteLine("no error");
                return 1;
            }
            catch (CommunicatorUnavailableException e)
            {
                Console.WriteLine($"ERROR {e.Message}");
                return 0;
            }
        case "checkpoint-killed":
            return CheckpointKilled.Run(args[1]);
        case "tp-engine":
            return TensorParallelEngine.Run();
        default:
            Console.Error.WriteLine($"unknown command '{command}': use collectives, nccl-missing, checkpoint-killed or tp-engine");
            return 2;
    }
}
catch (Exception e) when (e is InvalidDataException)
{
    Console.Error.WriteLine($"FAIL {e.Message}");
    return 1;
}

internal static class Collectives
{
    public static int Run(ICommunicator c)
    {
        int w = c.WorldSize, r = c.Rank, checks = 0;
        long triangle = (long)w * (w + 1) / 2; // sum over ranks of (rank + 1)

        // Sum all-reduce, each supported dtype: rank r holds (r + 1) * (i + 1).
        foreach (var type in new[] { float32, float64, int64, int32, bfloat16, float16, ScalarType.Byte, int8 })
        {
            using var t = (arange(1, 9, float64) * (r + 1)).to(type); // (8)
            c.AllReduce(t);
            Expect(t, arange(1, 9, float64) * triangle, $"AllReduce sum {type}");
            checks++;
        }

        // 64-bit integers beyond float precision survive exactly.
        using (var big = tensor(new[] { (1L << 53) + 1 + r, -(1L << 40) * (r + 1) }))
        {
            c.AllReduce(big);
            var expected = new[] { ((1L << 53) + 1) * w + (long)w * (w - 1) / 2, -(1L << 40) * triangle };
            if (!big.data<long>().ToArray().SequenceEqual(expected)) Fail($"AllReduce int64 gave [{string.Join(", ", big.data<long>().ToArray())}], expected [{string.Join(", ", expected)}]");
            checks++;
        }

        // A non-contiguous view is reduced in place, its base updated.
        using (var matrix = arange(6, float32).reshape(2, 3) + r)
        using (var view = matrix.t())
        {
            c.AllReduce(view);
            Expect(matrix, arange(6, float64).reshape(2, 3) * w + (double)w * (w - 1) / 2, "AllReduce of a transposed view");
            checks++;
        }

        // Max, min and the mean.
        using (var t = tensor(new[] { (float)r, -(float)r, 10f * r }))
        {
            c.AllReduce(t, ReduceOp.Max);
            Expect(t, tensor(new[] { w - 1.0, 0.0, 10.0 * (w - 1) }), "AllReduce max");
            checks++;
        }
        using (var t = tensor(new[] { (float)r, -(float)r }))
        {
            c.AllReduce(t, ReduceOp.Min);
            Expect(t, tensor(new[] { 0.0, -(w - 1.0) }), "AllReduce min");
            checks++;
        }
        using (var t = full(4, 2.0 * r, float64))
        {
            c.AllReduceAverage(t);
            Expect(t, full(4, w - 1.0, float64), "AllReduceAverage");
            checks++;
        }

        // A large buffer (4 MB), as a gradient bucket is.
        using (var t = ones(1 << 20, float32) * (r + 1))
        {
            c.AllReduce(t);
            Expect(t, full(1 << 20, (double)triangle, float64), "AllReduce of 2^20 floats");
            checks++;
        }

        // Reduce-scatter: rank q contributes q * 100 + j at flat position j; rank r keeps chunk r of the sum.
        foreach (var type in new[] { float32, int64, bfloat16 })
        {
            using var input = (arange(w * 3, float64) + 100 * r).reshape(w, 3).to(type);    // (W, 3)
            using var output = zeros(3, type);                                                  // (3)
            c.ReduceScatter(input, output);
            Expect(output, (arange(3, float64) + 3 * r) * w + 100.0 * w * (w - 1) / 2, $"ReduceScatter {type}");
            checks++;
        }

        // All-gather: rank q contributes q * 10 + k; the output holds rank 0's first.
        foreach (var type in new[] { float32, float64, int64 })
        {
            using var input = (arange(3, float64) + 10 * r).to(type);                           // (3)
            using var output = zeros(new long[] { w, 3 }, type);                              // (W, 3)
            c.AllGather(input, output);
            Expect(output, arange(3, float64).unsqueeze(0) + 10 * arange(w, float64).unsqueeze(1), $"AllGather {type}");
            checks++;
        }
        var ranks = c.AllGather(1000L + r);
        if (!ranks.SequenceEqual(Enumerable.Range(0, w).Select(q => 1000L + q))) Fail($"AllGather(long) gave [{string.Join(", ", ranks)}]");
        checks++;

        // Broadcast from the last rank, floats and integers.
        using (var t = full(5, (double)r, float32))
        {
            c.Broadcast(t, root: w - 1);
            Expect(t, full(5, w - 1.0, float64), "Broadcast float32 from the last rank");
            checks++;
        }
        using (var t = tensor(new[] { 7L * r, -r }))
        {
            c.Broadcast(t, root: 0);
            Expect(t, zeros(2, float64), "Broadcast int64 from rank 0");
            checks++;
        }

        // Any: true only on rank 1 (when there is one) is true everywhere.
        bool any = c.Any(r == 1);
        if (any != (w > 1)) Fail($"Any gave {any}");
        checks++;

        // Wrong shapes fail with a message on every rank alike, before any communication.
        try
        {
            using var bad = zeros(w * 3 + 1);
            using var output = zeros(3);
            c.ReduceScatter(bad, output);
            Fail("ReduceScatter accepted a wrong shape");
        }
        catch (ArgumentException e) when (e.Message.Contains("world size", StringComparison.Ordinal))
        {
            checks++;
        }

        // A (data, model) mesh: the model axis pairs neighbouring ranks, the data axis strides over them.
        if (w % 2 == 0)
        {
            using var mesh = DeviceMesh.Create(c, data: 0, model: 2);
            int d = r / 2, m = r % 2;
            if (mesh.ModelGroup.WorldSize != 2 || mesh.ModelGroup.Rank != m || mesh.DataGroup.WorldSize != w / 2 || mesh.DataGroup.Rank != d)
                Fail($"mesh of {mesh}: model group rank {mesh.ModelGroup.Rank} of {mesh.ModelGroup.WorldSize}, data group rank {mesh.DataGroup.Rank} of {mesh.DataGroup.WorldSize}");
            using var inModel = tensor(new[] { r + 1.0 });
            mesh.ModelGroup.AllReduce(inModel);
            Expect(inModel, tensor(new[] { 4.0 * d + 3 }), "AllReduce over the model group"); // (2d + 1) + (2d + 2)
            using var inData = tensor(new[] { r + 1.0 });
            mesh.DataGroup.AllReduce(inData);
            Expect(inData, tensor(new[] { Enumerable.Range(0, w / 2).Sum(i => 2.0 * i + m + 1) }), "AllReduce over the data group");
            checks += 3;
        }

        c.Barrier();
        return checks + 1;
    }

    private static void Expect(Tensor actual, Tensor expected, string what)
    {
        using var a = actual.to(float64).cpu();
        using var e = expected.to(float64).reshape(actual.shape);
        using var same = a.eq(e).all();
        if (!same.item<bool>())
            Fail($"{what}: got [{string.Join(", ", a.flatten().data<double>().ToArray())}], expected [{string.Join(", ", e.flatten().data<double>().ToArray())}]");
    }

    private static void Fail(string message) => throw new InvalidDataException(message);
}

/// <summary>
/// Two tensor-parallel ranks write a sharded checkpoint at step 10, then start one at step 20 during which rank 1 is
/// killed (SIGKILL) right after writing its part: the job dies before the barrier, so step 20 is never committed.
/// </summary>
internal static class CheckpointKilled
{
    /// <summary>The model both checkpoints hold; the test rebuilds it from the same seed to compare.</summary>
    public static DecoderLmOptions Options { get; } = new()
    {
        VocabSize = 40, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 32,
    };

    public const long Seed = 5;

    public static int Run(string runDirectory)
    {
        using var world = Communicators.FromEnvironment();
        using var mesh = DeviceMesh.Create(world, data: 0, model: 2);
        using var random = new Generator((ulong)Seed);
        using var model = Options.Build(CPU, random);
        model.ShardForTensorParallel(mesh.ModelGroup, PartitionRules.Default);
        var config = new RunConfig { Model = Options, Parallelism = new ParallelismOptions { Model = 2 }, Training = new TrainerOptions { Optimizer = "adamw" } };
        var noState = new Dictionary<string, Tensor>();
        TrainingCheckpoint.SaveSharded(runDirectory, model, noState, 0, random, new TrainerState { Step = 10, Seed = Seed }, config, "byte", keep: 3, mesh);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(1); // step 20's weights differ from step 10's
        TrainingCheckpoint.SaveSharded(runDirectory, model, noState, 0, random, new TrainerState { Step = 20, Seed = Seed }, config, "byte", keep: 3, mesh,
            onPartWritten: _ =>
            {
                if (world.Rank == 1) Process.GetCurrentProcess().Kill(); // mid-checkpoint: its part is on disk, the barrier not reached
            });
        Console.WriteLine($"rank {world.Rank}: step 20 was committed although rank 1 was killed");
        return 1;
    }
}
