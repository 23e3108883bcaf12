using Loom.Core;
using Loom.Models.Interop;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom decoders as Hugging Face Llama folders and back.</summary>
public sealed class HuggingFaceModelsTests
{
    /// <summary>A Llama-shaped tiny decoder: serial blocks, grouped K/V heads, untied output projection.</summary>
    private static DecoderLmOptions Llama(int kvHeads = 2, bool tied = false) => TinyModels.Decoder(kvHeads, parallel: false) with
    {
        SharedEmbeddings = tied, ScaleSharedLogits = false,
    };

    private static Tensor Tokens()
    {
        using var g = Seeded.Generator(3);
        return randint(0, 40, [2, 12], generator: g);
    }

    [Theory]
    [InlineData(1, false)] // multi-query
    [InlineData(2, false)] // grouped
    [InlineData(4, true)]  // multi-head, tied embeddings (Llama 3.2's small models)
    public void ALoomLlamaRoundTripsThroughAHuggingFaceFolderExactly(int kvHeads, bool tied)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Seeded.Model(Llama(kvHeads, tied), 1);
        HuggingFaceModels.Export(model, temp.Path, eosTokenId: 38);
        using var back = (DecoderLm)HuggingFaceModels.Import(temp.Path);

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);
        var tokens = Tokens();
        Assert.True(model.forward(tokens).equal(back.forward(tokens)).all().item<bool>());

        var saved = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));
        Assert.Equal(tied, !saved.ContainsKey("lm_head.weight"));
        Assert.Equal([40L, 32L], saved["model.embed_tokens.weight"].shape);
        Assert.Equal([kvHeads * 8L, 32L], saved["model.layers.1.self_attn.k_proj.weight"].shape);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal("llama", config["model_type"]!.GetValue<string>());
        Assert.Equal(kvHeads, config["num_key_value_heads"]!.GetValue<int>());
        Assert.Equal(38, config["eos_token_id"]!.GetValue<int>());
    }

    /// <summary>
    /// A folder as transformers' save_pretrained lays out a 2-layer LlamaForCausalLM (its config.json fields and tensor
    /// names, written here by hand from the transformers source, sharded with an index): Loom imports it and computes
    /// what the same weights compute in a Loom model built directly.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)] // MistralForCausalLM: the same tensors; its config has no bias or pretraining_tp fields, and a sliding_window
    public void AFolderLaidOutAsTransformersSavesALlamaImportsAndScoresTheSame(bool mistral)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), """
            {
              "architectures": ["LlamaForCausalLM"],
              "attention_bias": false,
              "attention_dropout": 0.0,
              "bos_token_id": 1,
              "eos_token_id": 2,
              "head_dim": 8,
              "hidden_act": "silu",
              "hidden_size": 32,
              "initializer_range": 0.02,
              "intermediate_size": 64,
              "max_position_embeddings": 32,
              "mlp_bias": false,
              "model_type": "llama",
              "num_attention_heads": 4,
              "num_hidden_layers": 2,
              "num_key_value_heads": 2,
              "pretraining_tp": 1,
              "rms_norm_eps": 1e-05,
              "rope_scaling": null,
              "rope_theta": 500000.0,
              "tie_word_embeddings": false,
              "torch_dtype": "float32",
              "transformers_version": "4.46.0",
              "use_cache": true,
              "vocab_size": 40
            }
            """);
        if (mistral)
        {
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File("config.json")))!.AsObject();
            foreach (var key in new[] { "attention_bias", "mlp_bias", "pretraining_tp", "rope_scaling" }) config.Remove(key);
            config["architectures"] = new System.Text.Json.Nodes.JsonArray("MistralForCausalLM");
            config["model_type"] = "mistral";
            config["sliding_window"] = null; // Mistral 7B v0.2 and later: attention over the whole context
            File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        }
        using var g = Seeded.Generator(9);
        var hf = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = randn([40, 32], generator: g), ["model.norm.weight"] = randn([32], generator: g), ["lm_head.weight"] = randn([40, 32], generator: g) };
        for (int i = 0; i < 2; i++)
        {
            string p = $"model.layers.{i}.";
            hf[p + "input_layernorm.weight"] = 1 + 0.1 * randn([32], generator: g);
            hf[p + "post_attention_layernorm.weight"] = 1 + 0.1 * randn([32], generator: g);
            hf[p + "self_attn.q_proj.weight"] = 0.2 * randn([32, 32], generator: g);
            hf[p + "self_attn.k_proj.weight"] = 0.2 * randn([16, 32], generator: g);
            hf[p + "self_attn.v_proj.weight"] = 0.2 * randn([16, 32], generator: g);
            hf[p + "self_attn.o_proj.weight"] = 0.2 * randn([32, 32], generator: g);
            hf[p + "mlp.gate_proj.weight"] = 0.2 * randn([64, 32], generator: g);
            hf[p + "mlp.up_proj.weight"] = 0.2 * randn([64, 32], generator: g);
            hf[p + "mlp.down_proj.weight"] = 0.2 * randn([32, 64], generator: g);
        }
        HuggingFaceModels.WriteSharded(temp.Path, hf, maxShardBytes: 40 * 1024);
        Assert.True(File.Exists(temp.File(HuggingFaceModels.IndexFile)));
        Assert.Equal(3, Directory.GetFiles(temp.Path, "model-0000?-of-00003.safetensors").Length); // about 85 KB in shards of at most 40 KB

        using var imported = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        var o = (DecoderLmOptions)imported.Options;
        Assert.Equal((2, 4, 2, 8, 64, 500000.0, 1e-5), (o.NumLayers, o.NumHeads, o.NumKvHeads, o.HeadDim, o.MlpDim, o.RopeBase, o.NormEpsilon));

        // The same weights set into a Loom model by Loom's own names.
        using var direct = new DecoderLm(o);
        var state = direct.state_dict();
        using (no_grad())
        {
            state["embed"].copy_(hf["model.embed_tokens.weight"]);
            state["final_norm.weight"].copy_(hf["model.norm.weight"]);
            state["lm_head.weight"].copy_(hf["lm_head.weight"]);
            for (int i = 0; i < 2; i++)
            {
                string p = $"model.layers.{i}.", b = $"blocks.{i}.";
                state[b + "norm.weight"].copy_(hf[p + "input_layernorm.weight"]);
                state[b + "mlp_norm.weight"].copy_(hf[p + "post_attention_layernorm.weight"]);
                foreach (var (loom, name) in new[] { ("wq", "q"), ("wk", "k"), ("wv", "v"), ("wo", "o") })
                    state[$"{b}attn.{loom}.weight"].copy_(hf[$"{p}self_attn.{name}_proj.weight"]);
                foreach (var name in new[] { "gate", "up", "down" })
                    state[$"{b}mlp.{name}.weight"].copy_(hf[$"{p}mlp.{name}_proj.weight"]);
            }
        }
        var tokens = Tokens();
        var (fromFolder, fromNames) = (imported.forward(tokens), direct.forward(tokens));
        Assert.True(fromFolder.equal(fromNames).all().item<bool>(), $"max difference {(fromFolder - fromNames).abs().max().item<float>()}");
    }

    [Fact]
    public void ConfigurationsNoLlamaRepresentsAreRefusedNamingTheOption()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var palm = Seeded.Model(TinyModels.Decoder(), 1); // parallel block, tied and scaled logits
        Assert.Contains("model.parallel_block = true: PaLM's parallel block", Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(palm, temp.Path)).Message);
        using var scaled = Seeded.Model(Llama(tied: true) with { ScaleSharedLogits = true }, 1);
        Assert.Contains("model.scale_shared_logits = true", Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(scaled, temp.Path)).Message);
        using var gelu = Seeded.Model(Llama() with { Activation = MlpActivation.Gelu }, 1);
        Assert.Contains("Llama's MLP is SwiGLU", Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(gelu, temp.Path)).Message);
        Assert.False(File.Exists(temp.File(HuggingFaceModels.ConfigFile))); // nothing written
    }

    [Fact]
    public void BadFoldersAreOneLineErrorsNamingWhatIsWrong()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Seeded.Model(Llama(), 1);
        HuggingFaceModels.Export(model, temp.Path);
        string config = File.ReadAllText(temp.File("config.json"));
        var weights = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));

        File.WriteAllText(temp.File("config.json"), config.Replace("LlamaForCausalLM", "FalconForCausalLM"));
        Assert.Contains("architecture FalconForCausalLM is not supported: Loom imports LlamaForCausalLM, MistralForCausalLM", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
        File.WriteAllText(temp.File("config.json"), config);

        var missing = new Dictionary<string, Tensor>(weights);
        missing.Remove("model.layers.1.mlp.up_proj.weight");
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), missing);
        Assert.Contains("missing tensor 'model.layers.1.mlp.up_proj.weight'", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var reshaped = new Dictionary<string, Tensor>(weights) { ["model.layers.0.self_attn.q_proj.weight"] = zeros(16, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), reshaped);
        Assert.Contains("tensor 'model.layers.0.self_attn.q_proj.weight' has shape [16, 32], config.json implies [32, 32]", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var extra = new Dictionary<string, Tensor>(weights) { ["model.layers.2.mlp.up_proj.weight"] = zeros(64, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), extra);
        Assert.Contains("unexpected tensors model.layers.2.mlp.up_proj.weight", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), weights);
        var bytes = File.ReadAllBytes(temp.File(HuggingFaceModels.WeightsFile));
        File.WriteAllBytes(temp.File(HuggingFaceModels.WeightsFile), bytes[..(bytes.Length / 2)]);
        var truncated = Assert.ThrowsAny<Exception>(() => HuggingFaceModels.Import(temp.Path));
        Assert.True(truncated is InvalidDataException, truncated.ToString());
        Assert.Contains(HuggingFaceModels.WeightsFile, truncated.Message);
    }
}
