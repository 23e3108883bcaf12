using Loom.Models;
using Loom.Models.Parallelism;
using static TorchSharp.torch;

namespace Loom.Training.Tests;

/// <summary>A sharded checkpoint is whole only once committed: a rank killed while writing one leaves the previous one the newest loadable.</summary>
public sealed class ShardedCheckpointTests
{
    private static string Host => Path.Combine(AppContext.BaseDirectory, "Loom.Distributed.TestHost.dll");

    [SkippableFact]
    public void ARankKilledMidCheckpointLeavesThePreviousCheckpointTheNewestLoadable()
    {
        MpiRun.RequireMpirun();
        using var temp = new TempDirectory("loom-killed-");
        var run = MpiRun.Dotnet(2, temp.Path, Host, ["checkpoint-killed", temp.Path]);
        Assert.True(run.ExitCode != 0, $"the job should have died with rank 1: {run}");
        Assert.DoesNotContain("was committed although", run.Stdout);

        // Step 20 was begun (rank 1's part is on disk) but never committed; step 10 is the newest checkpoint.
        string root = TrainingCheckpoint.Root(temp.Path);
        string begun = Path.Combine(root, "step_00000020.tmp");
        Assert.True(File.Exists(Path.Combine(begun, ShardedTensors.FileName("model", 1, 2))), run.ToString());
        Assert.False(File.Exists(Path.Combine(begun, CheckpointIndex.CommitMarker)));
        var complete = TrainingCheckpoint.List(temp.Path);
        Assert.Equal([Path.Combine(root, "step_00000010")], complete);
        Assert.Equal(complete[0], TrainingCheckpoint.Resolve(temp.Path));

        // It loads in one process, the two ranks' parts put back together into the model they split.
        using var scope = NewDisposeScope();
        var (loaded, manifest) = ModelCheckpoint.Load(complete[0]);
        using var _ = loaded;
        Assert.Equal(10, manifest.Step);
        using var random = new Generator(5);
        using var original = TinyOriginal().Build(CPU, random);
        var expected = original.state_dict();
        foreach (var (name, tensor) in loaded.state_dict())
            Assert.True(expected[name].equal(tensor).all().item<bool>(), name);
    }

    [Fact]
    public void AnIndexWithoutItsCommitMarkerIsNotACheckpoint()
    {
        using var temp = new TempDirectory("loom-uncommitted-");
        string step = Path.Combine(TrainingCheckpoint.Root(temp.Path), "step_00000010");
        Directory.CreateDirectory(step);
        new CheckpointIndex { MeshModel = 2 }.Write(step);
        File.WriteAllText(Path.Combine(step, ModelCheckpoint.ManifestFile), "{}");
        Assert.Empty(TrainingCheckpoint.List(temp.Path));
        Assert.Contains("was never committed", Assert.Throws<InvalidDataException>(() => ModelCheckpoint.LoadCheckpointWeights(Seeded.Model(TinyModels.Decoder(), 1), step)).Message);
    }

    /// <summary>The options the test host's checkpoint-killed command trains (tests/Loom.Distributed.TestHost).</summary>
    private static DecoderLmOptions TinyOriginal() => new()
    {
        VocabSize = 40, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 1, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 32,
    };
}
