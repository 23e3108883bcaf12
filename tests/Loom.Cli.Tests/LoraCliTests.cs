namespace Loom.Cli.Tests;

/// <summary>
/// LoRA end to end: <c>loom train --init-from BASE --set lora.rank=N</c> writes adapter-only checkpoints,
/// <c>loom export merged</c> folds them into the weights, and <c>loom generate --adapter</c> serves them over the base.
/// </summary>
public sealed class LoraCliTests
{
    private static readonly string[] Small =
    [
        "--set", "data.sequence_length=32", "--set", "training.batch_size=4", "--set", "training.warmup_steps=1",
        "--set", "training.eval_batches=1", "--device", "cpu", "--threads", "1",
    ];

    private static readonly string[] TinyModel =
    [
        "--set", "model.model_dim=32", "--set", "model.num_layers=2", "--set", "model.mlp_dim=64", "--set", "model.head_dim=8",
        "--set", "model.num_heads=4", "--set", "model.num_kv_heads=2",
    ];

    [Fact]
    public void ALoraFineTuneSavesOnlyTheAdapterAndMergedGenerationMatchesTheAdapterOverTheBase()
    {
        using var temp = new TempDirectory("loom-lora-cli-");
        File.WriteAllText(temp.File("base.txt"), string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200)));
        File.WriteAllText(temp.File("tune.txt"), string.Concat(Enumerable.Repeat("a stitch in time saves nine, said the tailor. ", 200)));
        var pretrain = CliRunner.Run(temp.Path, ["train", "--data", temp.File("base.txt"), "--run-dir", temp.File("base"), "--set", "training.steps=40", "--set", "training.learning_rate=0.03", .. TinyModel, .. Small]);
        Assert.True(pretrain.ExitCode == 0, pretrain.Stderr + pretrain.Stdout);

        // The model options come from the base (no --preset); only the adapters of the query and value kernels train.
        var tune = CliRunner.Run(temp.Path, ["train", "--data", temp.File("tune.txt"), "--init-from", temp.File("base"), "--run-dir", temp.File("lora"),
            "--set", "lora.rank=4", "--set", "training.steps=20", "--set", "training.learning_rate=0.05", .. Small]);
        Assert.True(tune.ExitCode == 0, tune.Stderr + tune.Stdout);
        Assert.Contains("trainable parameters: 896 of ", tune.Stdout); // 2 layers × (wq: 4·32 + 32·4, wv: 4·32 + 16·4)
        string checkpoint = Directory.GetDirectories(temp.File("lora/checkpoints")).Single();
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors", "config.json", "model.json", "optimizer.safetensors", "trainer_state.json"],
            Directory.GetFiles(checkpoint).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        var merge = CliRunner.Run(temp.Path, ["export", "merged", "--checkpoint", temp.File("base"), "--adapter", temp.File("lora"), "--output", temp.File("merged")]);
        Assert.True(merge.ExitCode == 0, merge.Stderr + merge.Stdout);
        Assert.True(File.Exists(temp.File("merged/model.safetensors")));

        string[] generate = ["generate", "--prompt", "a stitch", "-t", "0", "-n", "24", "--device", "cpu"];
        var overBase = CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("base"), "--adapter", temp.File("lora")]);
        var merged = CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("merged")]);
        var run = CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("lora")]);
        var plainBase = CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("base")]);
        Assert.True(overBase.ExitCode == 0 && merged.ExitCode == 0 && run.ExitCode == 0, overBase.Stderr + merged.Stderr + run.Stderr);
        Assert.Equal(overBase.Stdout, merged.Stdout);
        Assert.Equal(overBase.Stdout, run.Stdout);
        Assert.NotEqual(plainBase.Stdout, overBase.Stdout); // the adapter changed what the model says

        // Bad input: one line naming what is wrong, exit 1, nothing written.
        AssertFails(CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("merged"), "--adapter", temp.File("lora")]),
            "the adapter was trained over other base weights");
        AssertFails(CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("base"), "--adapter", temp.File("base")]),
            "its checkpoints hold whole models, not LoRA adapters");
        AssertFails(CliRunner.Run(temp.Path, [.. generate, "--checkpoint", temp.File("base"), "--adapter", temp.Path]),
            "is not a LoRA adapter folder (no adapter_config.json)");
        AssertFails(CliRunner.Run(temp.Path, ["train", "--data", temp.File("tune.txt"), "--init-from", temp.File("base"), "--run-dir", temp.File("bad"), "--set", "lora.rank=0", .. Small]),
            "lora.rank = 0 must be positive");
        AssertFails(CliRunner.Run(temp.Path, ["train", "--data", temp.File("tune.txt"), "--init-from", temp.File("base"), "--run-dir", temp.File("bad"), "--set", "lora.target_modules=[\"q\"]", .. Small]),
            "'q' is not a module LoRA can adapt: use wq, wk, wv, wo, gate, up, down");
        AssertFails(CliRunner.Run(temp.Path, ["export", "merged", "--checkpoint", temp.File("base"), "--adapter", temp.File("lora"), "--output", temp.File("merged")]),
            "is not empty");
        Assert.False(Directory.Exists(temp.File("bad/checkpoints")));
    }

    [Fact]
    public void ALoraRunOverAHuggingFaceFolderWritesPeftsLlamaNamesAndGeneratesOverThatBase()
    {
        using var temp = new TempDirectory("loom-lora-hf-");
        File.WriteAllText(temp.File("base.txt"), string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200)));
        string[] llama = [.. TinyModel, "--set", "model.parallel_block=false", "--set", "model.shared_embeddings=false"];
        var pretrain = CliRunner.Run(temp.Path, ["train", "--data", temp.File("base.txt"), "--run-dir", temp.File("base"), "--set", "training.steps=2", .. llama, .. Small]);
        Assert.True(pretrain.ExitCode == 0, pretrain.Stderr + pretrain.Stdout);
        var export = CliRunner.Run(temp.Path, ["export", "hf", "--checkpoint", temp.File("base"), "--output", temp.File("hf")]);
        Assert.True(export.ExitCode == 0, export.Stderr + export.Stdout);

        // hf:DIR as the base: the model options come from its config.json.
        var tune = CliRunner.Run(temp.Path, ["train", "--data", temp.File("base.txt"), "--init-from", "hf:" + temp.File("hf"), "--run-dir", temp.File("lora"),
            "--set", "lora.rank=2", "--set", "lora.target_modules=[\"q_proj\",\"down_proj\"]", "--set", "training.steps=2", .. Small]);
        Assert.True(tune.ExitCode == 0, tune.Stderr + tune.Stdout);
        string checkpoint = Directory.GetDirectories(temp.File("lora/checkpoints")).Single();
        string config = File.ReadAllText(Path.Combine(checkpoint, "adapter_config.json"));
        Assert.Contains("\"q_proj\"", config);
        Assert.Contains("\"base_model_name_or_path\": \"hf:" + temp.File("hf"), config);
        using (var scope = TorchSharp.torch.NewDisposeScope())
            Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", Loom.Core.SafeTensors.Load(Path.Combine(checkpoint, "adapter_model.safetensors")).Keys);

        var generate = CliRunner.Run(temp.Path, ["generate", "--checkpoint", temp.File("lora"), "--prompt", "the", "-t", "0", "-n", "8", "--device", "cpu"]);
        Assert.True(generate.ExitCode == 0, generate.Stderr + generate.Stdout);
    }

    private static void AssertFails(CliRunner.Result result, string message)
    {
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(message, result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }
}
