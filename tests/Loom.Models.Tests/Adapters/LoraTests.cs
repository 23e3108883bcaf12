using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Adapters;
using static TorchSharp.torch;

namespace Loom.Models.Tests.Adapters;

/// <summary>LoRA adapters: attached over frozen kernels, saved in PEFT's layout, merged, and refused over another base.</summary>
public sealed class LoraTests
{
    private static readonly LoraOptions AllKernels = new() { Rank = 4, Alpha = 8, TargetModules = ["wq", "wk", "wv", "wo", "gate", "up", "down"] };

    private static Tensor Tokens()
    {
        using var g = Seeded.Generator(3);
        return randint(0, 40, [2, 12], generator: g);
    }

    /// <summary>Gives every B random values, so that the adapters change the model's output.</summary>
    private static void Randomise(LoraAdapters lora, long seed)
    {
        using var g = Seeded.Generator(seed);
        using var _ = no_grad();
        foreach (var layer in lora.Layers) layer.Adapter.B.normal_(0, 0.2, g);
    }

    private static double MaxDifference(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void AFreshAdapterLeavesTheModelUnchanged()
    {
        using var scope = NewDisposeScope();
        using var model = Seeded.Model(TinyModels.Decoder(), 1);
        model.eval();
        var tokens = Tokens();
        // Both forwards without gradients, so that both take the same kernels: attaching freezes the base weights, and
        // a frozen float kernel on the CPU is multiplied by Loom's decode kernel, which rounds differently from libtorch's.
        using var noGrad = no_grad();
        var before = model.forward(tokens);
        var lora = LoraAdapters.Attach(model, AllKernels, generator: Seeded.Generator(5));

        Assert.Equal(2 * 7, lora.Layers.Count);
        Assert.True(before.equal(model.forward(tokens)).all().item<bool>()); // B = 0
    }

    [Fact]
    public void MergedLogitsEqualTheBasePlusAdapterLogits()
    {
        using var scope = NewDisposeScope();
        using var model = Seeded.Model(TinyModels.Decoder(), 1);
        model.eval();
        var tokens = Tokens();
        var baseLogits = model.forward(tokens);
        var lora = LoraAdapters.Attach(model, AllKernels, generator: Seeded.Generator(5));
        Randomise(lora, 6);
        var adapted = model.forward(tokens);
        Assert.True(MaxDifference(baseLogits, adapted) > 1e-2, "the random adapters should change the logits");

        lora.Merge();

        Assert.Null(model.Lora);
        Assert.True(MaxDifference(adapted, model.forward(tokens)) < 1e-5);
    }

    [Fact]
    public void OnlyTheAdaptersRequireAndGetGradients()
    {
        using var scope = NewDisposeScope();
        using var model = Seeded.Model(TinyModels.Decoder(), 1);
        var lora = LoraAdapters.Attach(model, new LoraOptions { Rank = 2 }, generator: Seeded.Generator(5));
        Randomise(lora, 6);

        Assert.All(model.parameters(), p => Assert.False(p.requires_grad));
        Assert.All(lora.NamedParameters(), p => Assert.True(p.Param.requires_grad, p.Name));
        Assert.Equal(["blocks.0.attn.wq.lora_A", "blocks.0.attn.wq.lora_B"], lora.NamedParameters().Take(2).Select(p => p.Name));
        model.forward(Tokens()).sum().backward();
        Assert.All(model.parameters(), p => Assert.Null(p.grad));
        Assert.All(lora.NamedParameters(), p => Assert.NotNull(p.Param.grad));
        // The default targets (query and value) at rank 2 over two layers: A (2 × 32) and B (out × 2) each.
        Assert.Equal(2 * ((2 * 32 + 32 * 2) + (2 * 32 + 8 * 2)), lora.ParameterCount);
    }

    [Fact]
    public void AnAdapterRoundTripsThroughPeftFilesAndTheFolderHoldsOnlyTheAdapter()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-lora-");
        var tokens = Tokens();
        Tensor expected;
        using (var model = Seeded.Model(TinyModels.Decoder(), 1))
        {
            model.eval();
            var lora = LoraAdapters.Attach(model, AllKernels, "runs/base", Seeded.Generator(5));
            Randomise(lora, 6);
            expected = model.forward(tokens);
            lora.Save(temp.Path);
        }

        Assert.Equal([LoraAdapters.ConfigFile, LoraAdapters.WeightsFile], Directory.GetFiles(temp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var config = JsonNode.Parse(File.ReadAllText(temp.File(LoraAdapters.ConfigFile)))!;
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["lora_alpha"]!.GetValue<double>());
        Assert.Equal("runs/base", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.StartsWith("sha256:", config["loom_base_fingerprint"]!.GetValue<string>());
        var tensors = SafeTensors.Load(temp.File(LoraAdapters.WeightsFile));
        Assert.Equal(2 * 7 * 2, tensors.Count);
        Assert.Contains("base_model.model.blocks.0.attn.wq.lora_A.weight", tensors.Keys);
        Assert.Equal([4L, 32L], tensors["base_model.model.blocks.0.attn.wq.lora_A.weight"].shape);
        Assert.Equal([64L, 4L], tensors["base_model.model.blocks.1.mlp.up.lora_B.weight"].shape);

        using var again = Seeded.Model(TinyModels.Decoder(), 1);
        again.eval();
        var loaded = LoraAdapters.Load(temp.Path, again);
        Assert.Equal(AllKernels.CanonicalTargets(), loaded.Options.TargetModules);
        Assert.True(expected.equal(again.forward(tokens)).all().item<bool>());
    }

    [Fact]
    public void ALlamaShapedModelsAdapterUsesHuggingFaceNamesAsPeftWritesThem()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-lora-");
        var llama = TinyModels.Decoder(kvHeads: 2, parallel: false) with { ScaleSharedLogits = false };
        using var model = Seeded.Model(llama, 1);
        LoraAdapters.Attach(model, new LoraOptions { Rank = 2 }, "hf/base").Save(temp.Path);

        var config = JsonNode.Parse(File.ReadAllText(temp.File(LoraAdapters.ConfigFile)))!;
        Assert.Equal(["q_proj", "v_proj"], config["target_modules"]!.AsArray().Select(t => t!.GetValue<string>()));
        Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", SafeTensors.Load(temp.File(LoraAdapters.WeightsFile)).Keys);
        using var again = Seeded.Model(llama, 1);
        Assert.Equal(4, LoraAdapters.Load(temp.Path, again).Layers.Count);
    }

    [Fact]
    public void AnAdapterForAnotherBaseIsRefusedWithTheReason()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-lora-");
        using (var model = Seeded.Model(TinyModels.Decoder(), 1))
            LoraAdapters.Attach(model, new LoraOptions { Rank = 2 }, "runs/base").Save(temp.Path);

        using var otherWeights = Seeded.Model(TinyModels.Decoder(), 2);
        var e = Assert.Throws<InvalidDataException>(() => LoraAdapters.Load(temp.Path, otherWeights));
        Assert.Contains("trained over other base weights (base_model_name_or_path = runs/base", e.Message);
        Assert.Null(otherWeights.Lora); // nothing left attached

        using var otherShape = Seeded.Model(TinyModels.Decoder() with { ModelDim = 48, HeadDim = 12 }, 1);
        e = Assert.Throws<InvalidDataException>(() => LoraAdapters.Load(temp.Path, otherShape));
        Assert.Contains("has shape [2, 32] but kernel blocks.0.attn.wq needs [2, 48]: the adapter was trained over another base model", e.Message);

        using var plain = Seeded.Model(TinyModels.Decoder(), 1);
        e = Assert.Throws<InvalidDataException>(() => LoraAdapters.Load(Path.GetTempPath(), plain));
        Assert.Contains("is not a LoRA adapter folder (no adapter_config.json)", e.Message);
    }

    [Theory]
    [InlineData(0, "wq", "lora.rank = 0 must be positive")]
    [InlineData(4, "qkv", "'qkv' is not a module LoRA can adapt: use wq, wk, wv, wo, gate, up, down (or PEFT's q_proj")]
    public void BadOptionsAreRefusedWithTheValidChoices(int rank, string target, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new LoraOptions { Rank = rank, TargetModules = [target] }.Validate());
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void PeftNamesAreAcceptedAsTargets() =>
        Assert.Equal(["wq", "wv", "down"], new LoraOptions { TargetModules = ["down_proj", "q_proj", "wv", "v_proj"] }.CanonicalTargets());

    [Fact]
    public void AnAdaptedModelIsCheckpointedAsItsAdapterOverTheNamedBase()
    {
        using var scope = NewDisposeScope();
        using var baseDir = new TempDirectory("loom-base-");
        using var adapterDir = new TempDirectory("loom-lora-");
        var tokens = Tokens();
        Tensor expected;
        using (var model = Seeded.Model(TinyModels.Decoder(), 1))
        {
            ModelCheckpoint.Save(baseDir.Path, model, new ModelManifest { Model = model.Options });
            var lora = LoraAdapters.Attach(model, AllKernels, baseDir.Path, Seeded.Generator(5));
            Randomise(lora, 6);
            model.eval();
            expected = model.forward(tokens);
            ModelCheckpoint.Save(adapterDir.Path, model, new ModelManifest { Model = model.Options, Step = 7 });
        }

        Assert.False(File.Exists(adapterDir.File(ModelCheckpoint.WeightsFile)));
        Assert.Equal(baseDir.Path, ModelCheckpoint.ReadManifest(adapterDir.Path).BaseModel);
        var (loaded, manifest) = ModelCheckpoint.Load(adapterDir.Path);
        using (loaded)
        {
            loaded.eval();
            Assert.Equal(7, manifest.Step);
            Assert.NotNull(loaded.Lora);
            Assert.True(expected.equal(loaded.Forward(tokens, null)).all().item<bool>());
        }
        // A plain model initialised from the adapter checkpoint gets the merged weights.
        using var merged = Seeded.Model(TinyModels.Decoder(), 9);
        merged.eval();
        ModelCheckpoint.LoadCheckpointWeights(merged, adapterDir.Path);
        Assert.Null(merged.Lora);
        Assert.True(MaxDifference(expected, merged.forward(tokens)) < 1e-5);
    }
}
