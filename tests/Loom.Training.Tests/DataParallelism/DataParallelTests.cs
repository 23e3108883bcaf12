using Loom.Data;
using Loom.Distributed;
using Loom.Training.DataParallelism;
using static TorchSharp.torch;

namespace Loom.Training.Tests.DataParallelism;

public sealed class DataParallelTests
{
    /// <summary>
    /// Rank 0 of two ranks whose peer holds exactly what this rank holds: a sum doubles, a gather repeats
    /// (plus <see cref="PeerOffset"/>, to play a peer whose value differs). Enough to run the reduction logic
    /// in one process; the real collectives are tested under mpirun in Loom.Distributed.Tests.
    /// </summary>
    private sealed class TwinCommunicator : ICommunicator
    {
        public long PeerOffset { get; init; }

        public int AllReduces { get; private set; }

        public int Rank => 0;

        public int WorldSize => 2;

        public string Backend => "twin";

        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
        {
            AllReduces++;
            if (op == ReduceOp.Sum) tensor.mul_(2);
        }

        public void AllGather(Tensor input, Tensor output)
        {
            var halves = output.reshape(2, -1);
            halves[0].copy_(input.reshape(-1));
            halves[1].copy_(input.reshape(-1) + PeerOffset);
        }

        public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();

        public void Broadcast(Tensor tensor, int root)
        {
        }

        public void Barrier()
        {
        }

        public ICommunicator Split(int color, int key) => throw new NotSupportedException("the twin is one data-parallel group");

        public void Abort(int exitCode) => throw new NotSupportedException();

        public void Dispose()
        {
        }
    }

    private static (Loom.Models.DecoderLm Model, Dictionary<string, Tensor> Gradients) ModelWithGradients()
    {
        var model = Seeded.Model(TinyModels.Decoder(), seed: 3);
        using var random = Seeded.Generator(4);
        using var scope = NewDisposeScope();
        var tokens = randint(0, 40, [2, 16], generator: random);
        model.Loss(FeatureBatch.Decoder(tokens, tokens.roll(-1, 1)), 1e-4).Total.backward();
        return (model, model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone().DetachFromDisposeScope()));
    }

    [Fact]
    public void AveragingEqualRanksKeepsEveryGradientAndUsesOneAllReducePerBucket()
    {
        var (model, before) = ModelWithGradients();
        using var _ = model;
        var twin = new TwinCommunicator();
        var parameters = model.parameters().ToList();
        long largest = parameters.Max(p => p.numel() * 4);
        using var parallel = new DataParallel(twin, parameters, bucketBytes: largest);
        Assert.InRange(parallel.BucketCount, 2, parameters.Count);

        parallel.AverageGradients();
        Assert.Equal(parallel.BucketCount, twin.AllReduces);
        foreach (var (name, p) in model.named_parameters())
            Assert.True(p.grad!.equal(before[name]).all().item<bool>(), name); // (2g)/2 is exact
        foreach (var g in before.Values) g.Dispose();
    }

    [Fact]
    public void AParameterNoRankReachedKeepsNoGradient()
    {
        var (model, before) = ModelWithGradients();
        using var _ = model;
        var unused = model.parameters().First();
        unused.grad = null;
        using var parallel = new DataParallel(new TwinCommunicator(), model.parameters().ToList());
        Assert.Equal(1, parallel.BucketCount); // the tiny model fits in one 25 MB bucket
        parallel.AverageGradients();
        Assert.Null(unused.grad);
        Assert.All(model.parameters().Skip(1), p => Assert.NotNull(p.grad));
        foreach (var g in before.Values) g.Dispose();
    }

    [Fact]
    public void OneRankNeedsNoBuffersAndChangesNothing()
    {
        var (model, before) = ModelWithGradients();
        using var _ = model;
        using var parallel = new DataParallel(new SingleProcessCommunicator(), model.parameters().ToList());
        Assert.Equal(0, parallel.BucketCount);
        parallel.AverageGradients();
        foreach (var (name, p) in model.named_parameters()) Assert.True(p.grad!.equal(before[name]).all().item<bool>(), name);
        foreach (var g in before.Values) g.Dispose();
    }

    [Fact]
    public void ADifferentConfigOnAnotherRankIsAnErrorNamingIt()
    {
        DataParallel.CheckSameConfig(new TwinCommunicator(), "{\"a\":1}");
        var e = Assert.Throws<Loom.Distributed.ErrorOnEveryRankException>(() => DataParallel.CheckSameConfig(new TwinCommunicator { PeerOffset = 1 }, "{\"a\":1}"));
        Assert.StartsWith("rank 1 resolved a different config from rank 0's", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheGlobalBatchMustSplitEvenly()
    {
        Assert.Equal(2, new DataShard(1, 2).RowsPerRank(4));
        Assert.Equal(4, DataShard.Single.RowsPerRank(4));
        var e = Assert.Throws<ArgumentException>(() => new DataShard(0, 2).RowsPerRank(3));
        Assert.Contains("training.batch_size = 3 is the global batch", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataShard(2, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataShard(0, 0));
    }

    [Fact]
    public void TwoShardsTogetherDrawExactlyTheRowsOfOneProcess()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), steps: 4);
        var one = TrainingDataLoader.Load(config.Data, config.Training);
        var shards = Enumerable.Range(0, 2).Select(r => TrainingDataLoader.Load(config.Data, config.Training, shard: new DataShard(r, 2))).ToList();
        Assert.All(shards, s => Assert.Equal(config.Training.BatchSize / 2, s.Train.BatchSize));
        for (long step = 0; step < 6; step++)
        {
            using var scope = NewDisposeScope();
            var whole = Rows(one.Train.GetBatch(step));
            var parts = shards.SelectMany(s => Rows(s.Train.GetBatch(step))).ToList();
            Assert.Equal(whole.Order(StringComparer.Ordinal), parts.Order(StringComparer.Ordinal));
        }

        static List<string> Rows(FeatureBatch batch)
        {
            var tokens = batch.Inputs; // (B, T)
            return [.. Enumerable.Range(0, (int)tokens.shape[0]).Select(b => string.Join(',', tokens[b].data<long>().ToArray()))];
        }
    }

    [Fact]
    public void TheTrainerRefusesDataThatIsNotThisRanksShard()
    {
        using var dir = new TempDirectory();
        var config = TrainerFixtures.Config(TrainerFixtures.WriteCorpus(dir), steps: 2);
        var data = TrainingDataLoader.Load(config.Data, config.Training); // the whole batch, as for one process
        var e = Assert.Throws<ArgumentException>(() => new Trainer(config, data, dir.File("run"), CPU, communicator: new TwinCommunicator()));
        Assert.Contains("load the data with this rank's DataShard", e.Message);
    }
}
