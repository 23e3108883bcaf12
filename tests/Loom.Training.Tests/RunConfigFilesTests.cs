using Loom.Models;

namespace Loom.Training.Tests;

/// <summary>The run files shipped in configs/runs stay loadable as the config schema changes.</summary>
public class RunConfigFilesTests
{
    private static string Configs => Path.Combine(RepositoryRoot.Find(), "configs");

    public static TheoryData<string> RunFiles()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.GetFiles(Path.Combine(Configs, "runs"), "*.json").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(RunFiles))]
    public void EveryRunFileResolves(string file)
    {
        var config = RunConfigLoader.Load(Path.Combine(Configs, "runs", file), null, [], Configs);
        Assert.Equal(config, config.Validate());
    }

    [Fact]
    public void TheT5AndMoeDemosResolveToWhatTheyDescribe()
    {
        var pretrain = RunConfigLoader.Load(Path.Combine(Configs, "runs", "t5-pretrain.json"), null, [], Configs);
        Assert.Equal(ModelArchitectures.T5, pretrain.Model.Architecture);
        Assert.Equal("books_span_corruption", pretrain.Data.Mixture);
        Assert.Equal("byte+extra_ids=100", pretrain.Data.Vocabulary);

        var finetune = RunConfigLoader.Load(Path.Combine(Configs, "runs", "t5-finetune-spam.json"), null, [], Configs);
        Assert.Equal(pretrain.Model, finetune.Model); // so the pre-trained weights fit
        Assert.Equal(pretrain.Data.Vocabulary, finetune.Data.Vocabulary);
        Assert.Equal("spam_assassin", finetune.Data.Task);
        Assert.Equal("runs/t5-pretrain", finetune.Training.InitFrom);

        var moe = RunConfigLoader.Load(Path.Combine(Configs, "runs", "tiny-moe.json"), null, [], Configs);
        Assert.Equal(ModelArchitectures.DecoderLm, moe.Model.Architecture);
        Assert.Equal("austen", moe.Data.Corpus);
        Assert.Contains("\"num_experts\": 8", RunConfigLoader.ToJson(moe));
        Assert.Contains("\"top_k\": 2", RunConfigLoader.ToJson(moe));
    }
}
