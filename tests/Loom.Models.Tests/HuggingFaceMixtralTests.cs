using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Interop;
using Xunit.Abstractions;
using Loom.Models.Layers;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom decoders with a mixture of experts as Hugging Face Mixtral folders and back.</summary>
public sealed class HuggingFaceMixtralTests(ITestOutputHelper output)
{
    private const int Experts = 4, Ffn = 48;

    /// <summary>A Mixtral-shaped tiny decoder: a Llama with 4 SwiGLU experts of width 48 (≠ d = 32, so a transpose shows) in every layer, top-2, dropless.</summary>
    private static DecoderLmOptions Mixtral(int kvHeads = 2, bool tied = false) => TinyModels.Decoder(kvHeads, parallel: false) with
    {
        MlpDim = Ffn,
        SharedEmbeddings = tied,
        ScaleSharedLogits = false,
        Moe = new MoeOptions { NumExperts = Experts, TopK = 2, Every = 1, CapacityFactor = null, LoadBalancingWeight = 0.02, RouterZLossWeight = 0 },
    };

    private static Tensor Tokens()
    {
        using var g = Seeded.Generator(3);
        return randint(0, 40, [2, 12], generator: g);
    }

    [Theory]
    [InlineData(2, false)]
    [InlineData(4, true)]
    public void ALoomMixtralRoundTripsThroughAHuggingFaceFolderExactly(int kvHeads, bool tied)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Seeded.Model(Mixtral(kvHeads, tied), 1);
        model.eval();
        Assert.Same(HuggingFaceMixtral.Instance, HuggingFaceModels.Export(model, temp.Path, bosTokenId: 1, eosTokenId: 2));
        using var back = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        back.eval();

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        Assert.Equal(original.Keys.Order(), back.state_dict().Keys.Order());
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);
        var tokens = Tokens();
        Assert.True(model.forward(tokens).equal(back.forward(tokens)).all().item<bool>());

        var saved = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));
        Assert.Equal(tied, !saved.ContainsKey("lm_head.weight"));
        Assert.Equal([Experts, 32L], saved["model.layers.1.block_sparse_moe.gate.weight"].shape);
        Assert.Equal([(long)Ffn, 32L], saved["model.layers.1.block_sparse_moe.experts.3.w1.weight"].shape);
        Assert.Equal([(long)Ffn, 32L], saved["model.layers.1.block_sparse_moe.experts.3.w3.weight"].shape);
        Assert.Equal([32L, Ffn], saved["model.layers.1.block_sparse_moe.experts.3.w2.weight"].shape);
        Assert.DoesNotContain(saved.Keys, k => k.Contains(".mlp.", StringComparison.Ordinal));
        Assert.True(saved["model.layers.0.block_sparse_moe.experts.2.w2.weight"].equal(original["blocks.0.mlp.down.weight"][2]).all().item<bool>());
        var config = JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal("mixtral", config["model_type"]!.GetValue<string>());
        Assert.Equal("MixtralForCausalLM", config["architectures"]![0]!.GetValue<string>());
        Assert.Equal(Experts, config["num_local_experts"]!.GetValue<int>());
        Assert.Equal(2, config["num_experts_per_tok"]!.GetValue<int>());
        Assert.Equal(0.01, config["router_aux_loss_coef"]!.GetValue<double>()); // Loom's 0.02 counts over k·N assignments
        Assert.Null(config["sliding_window"]);
        Assert.Null(config["mlp_bias"]); // a Llama field MixtralConfig does not have
    }

    /// <summary>config.json as transformers 4.46's save_pretrained writes a MixtralForCausalLM (every MixtralConfig field, sorted).</summary>
    private const string TransformersConfig = """
        {
          "architectures": ["MixtralForCausalLM"],
          "attention_dropout": 0.0,
          "bos_token_id": 1,
          "eos_token_id": 2,
          "hidden_act": "silu",
          "hidden_size": 32,
          "initializer_range": 0.02,
          "intermediate_size": 48,
          "max_position_embeddings": 32,
          "model_type": "mixtral",
          "num_attention_heads": 4,
          "num_experts_per_tok": 2,
          "num_hidden_layers": 2,
          "num_key_value_heads": 2,
          "num_local_experts": 4,
          "output_router_logits": false,
          "rms_norm_eps": 1e-05,
          "rope_theta": 1000000.0,
          "router_aux_loss_coef": 0.02,
          "router_jitter_noise": 0.0,
          "sliding_window": null,
          "tie_word_embeddings": false,
          "torch_dtype": "float32",
          "transformers_version": "4.46.0",
          "use_cache": true,
          "vocab_size": 40
        }
        """;

    /// <summary>Random tensors under the names and shapes transformers gives a 2-layer Mixtral of <see cref="TransformersConfig"/>.</summary>
    private static Dictionary<string, Tensor> TransformersTensors()
    {
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
            hf[p + "block_sparse_moe.gate.weight"] = 0.5 * randn([Experts, 32], generator: g);
            for (int e = 0; e < Experts; e++)
            {
                string x = $"{p}block_sparse_moe.experts.{e}.";
                hf[x + "w1.weight"] = 0.2 * randn([Ffn, 32], generator: g);
                hf[x + "w2.weight"] = 0.2 * randn([32, Ffn], generator: g);
                hf[x + "w3.weight"] = 0.2 * randn([Ffn, 32], generator: g);
            }
        }
        return hf;
    }

    /// <summary>
    /// A folder as transformers' save_pretrained lays out a 2-layer MixtralForCausalLM (its config.json fields and tensor
    /// names, written here by hand from the transformers source, sharded with an index): Loom imports it and computes
    /// what the same weights compute in a Loom model whose experts were stacked here by hand.
    /// </summary>
    [Fact]
    public void AFolderLaidOutAsTransformersSavesAMixtralImportsAndScoresTheSame()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var hf = TransformersTensors();
        HuggingFaceModels.WriteSharded(temp.Path, hf, maxShardBytes: 40 * 1024);
        Assert.True(Directory.GetFiles(temp.Path, "model-0000?-of-0000?.safetensors").Length > 2);

        using var imported = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        imported.eval();
        var o = (DecoderLmOptions)imported.Options;
        Assert.Equal((2, 4, 2, 8, Ffn, 1e6, 1e-5), (o.NumLayers, o.NumHeads, o.NumKvHeads, o.HeadDim, o.MlpDim, o.RopeBase, o.NormEpsilon));
        Assert.Equal(new MoeOptions { NumExperts = Experts, TopK = 2, Every = 1, CapacityFactor = null, LoadBalancingWeight = 0.04, RouterZLossWeight = 0 }, o.Moe);

        // The same weights set into a Loom model by Loom's own names, the experts stacked here.
        using var direct = new DecoderLm(o);
        direct.eval();
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
                state[b + "mlp.router_weight"].copy_(hf[p + "block_sparse_moe.gate.weight"]);
                for (int e = 0; e < Experts; e++)
                {
                    string x = $"{p}block_sparse_moe.experts.{e}.";
                    state[b + "mlp.gate.weight"][e].copy_(hf[x + "w1.weight"]);
                    state[b + "mlp.up.weight"][e].copy_(hf[x + "w3.weight"]);
                    state[b + "mlp.down.weight"][e].copy_(hf[x + "w2.weight"]);
                }
            }
        }
        var tokens = Tokens();
        var (fromFolder, fromNames) = (imported.forward(tokens), direct.forward(tokens));
        Assert.True(fromFolder.equal(fromNames).all().item<bool>(), $"max difference {(fromFolder - fromNames).abs().max().item<float>()}");

        // Without rope_theta, MixtralConfig's default base.
        File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace("\"rope_theta\": 1000000.0,", ""));
        Assert.Equal(1e6, ((DecoderLmOptions)HuggingFaceModels.ReadOptions(temp.Path)).RopeBase);
        // transformers 5 writes it inside rope_parameters.
        File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace("\"rope_theta\": 1000000.0,", "\"rope_parameters\": {\"rope_theta\": 20000.0, \"rope_type\": \"default\"},"));
        Assert.Equal(20000, ((DecoderLmOptions)HuggingFaceModels.ReadOptions(temp.Path)).RopeBase);
    }

    /// <summary>
    /// transformers' MixtralSparseMoeBlock at inference, written out with plain torch ops from its source: router logits
    /// x Wᵀ, softmax over all experts in float32, top-2, the two weights renormalised to sum to 1, and the weighted sum
    /// of the chosen experts' SwiGLU outputs w2(silu(w1 x) · w3 x). Loom's MoE layer of the imported model computes it.
    /// </summary>
    [Fact]
    public void LoomsMixtureOfExpertsComputesWhatTransformersMixtralBlockComputes()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var hf = TransformersTensors();
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), hf);
        using var model = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        model.eval();
        var moe = model.modules().OfType<MoeMlp>().First(); // layer 0's

        using var g = Seeded.Generator(5);
        var x = randn([3, 7, 32], generator: g); // (B, T, D)
        var tokens = x.reshape(-1, 32);          // (N, D)
        var routing = nn.functional.softmax(nn.functional.linear(tokens, hf["model.layers.0.block_sparse_moe.gate.weight"]), 1, ScalarType.Float32); // (N, E)
        var (weights, selected) = routing.topk(2, dim: -1);                                                   // (N, 2)
        weights = weights / weights.sum(-1, keepdim: true);
        var expected = zeros_like(tokens);                                                                    // (N, D)
        for (int e = 0; e < Experts; e++)
        {
            string p = $"model.layers.0.block_sparse_moe.experts.{e}.";
            var expert = nn.functional.linear(
                nn.functional.silu(nn.functional.linear(tokens, hf[p + "w1.weight"])) * nn.functional.linear(tokens, hf[p + "w3.weight"]),
                hf[p + "w2.weight"]);                                                                         // (N, D), every token through expert e
            var weight = (weights * selected.eq(e).to(float32)).sum(-1, keepdim: true);                       // (N, 1), 0 where e was not chosen
            expected += weight * expert;
        }
        Assert.True(selected.select(1, 0).ne(selected.select(1, 1)).all().item<bool>());
        var hits = nn.functional.one_hot(selected.flatten(), Experts).sum(dim: 0);
        Assert.True(hits.gt(0).sum().item<long>() > 2, $"the tokens should spread over more than two experts: [{string.Join(", ", hits.to(int64).data<long>().ToArray())}]");

        using var noGrad = no_grad();
        var actual = moe.forward(x, null).Output.reshape(-1, 32);
        float difference = (actual - expected).abs().max().item<float>();
        output.WriteLine($"Mixtral MoE block: max |Loom − transformers' formula| = {difference:G3}, outputs up to {expected.abs().max().item<float>():G3}");
        Assert.True(difference < 1e-5, $"max difference {difference}");

        // A capacity factor limits experts in training only: in evaluation Loom's routing is dropless, so a Loom model
        // trained with one (which WhyNot accepts) computes the same as Mixtral at inference.
        using var limited = new MoeMlp(32, Ffn, Experts, 2, capacityFactor: 0.5, MlpActivation.SwiGlu);
        limited.load_state_dict(moe.state_dict());
        limited.eval();
        var capped = limited.forward(x, null);
        Assert.True(capped.Output.equal(actual.view(3, 7, 32)).all().item<bool>());
        Assert.Equal(0f, capped.DroppedFraction.item<float>());
    }

    [Fact]
    public void ConfigurationsNoMixtralRepresentsAreRefusedNamingTheOption()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        foreach (var (options, expected) in new (DecoderLmOptions, string)[]
        {
            (Mixtral() with { Moe = Mixtral().Moe! with { Every = 2 } }, "model.moe.every = 2: Mixtral has a mixture of experts in every layer"),
            (Mixtral() with { Moe = Mixtral().Moe! with { TopK = 1 } }, "model.moe.top_k = 1: Mixtral renormalises"),
            (Mixtral() with { Activation = MlpActivation.GeGlu }, "not MixtralForCausalLM: model.activation = GeGlu"),
            (Mixtral() with { ParallelBlock = true }, "not MixtralForCausalLM: model.parallel_block = true"),
        })
        {
            using var model = Seeded.Model(options, 1);
            Assert.Contains(expected, Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(model, temp.Path)).Message);
        }
        Assert.False(File.Exists(temp.File(HuggingFaceModels.ConfigFile))); // nothing written
        Assert.Contains("model.moe is not set", HuggingFaceMixtral.Instance.WhyNot(Mixtral() with { Moe = null }));
        Assert.Contains("a MixtralForCausalLM, not a Llama", HuggingFaceLlama.Instance.WhyNot(Mixtral()));
        Assert.Null(HuggingFaceMixtral.Instance.WhyNot(Mixtral() with { Moe = Mixtral().Moe! with { CapacityFactor = 1.25, RouterZLossWeight = 0.001 } })); // training-only settings

        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), TransformersTensors());
        File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 1"));
        Assert.Contains("num_experts_per_tok = 1", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
        File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace("\"router_jitter_noise\": 0.0", "\"router_jitter_noise\": 0.01"));
        Assert.Contains("router_jitter_noise = 0.01", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
        File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace("\"sliding_window\": null", "\"sliding_window\": 16"));
        Assert.Contains("sliding_window = 16", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
    }

    [Fact]
    public void BadMixtralFoldersAreOneLineErrorsNamingTheTensor()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var weights = TransformersTensors();

        var missing = new Dictionary<string, Tensor>(weights);
        missing.Remove("model.layers.1.block_sparse_moe.experts.2.w3.weight");
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), missing);
        Assert.Contains("missing tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight'", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var transposed = new Dictionary<string, Tensor>(weights) { ["model.layers.0.block_sparse_moe.experts.1.w2.weight"] = zeros(Ffn, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), transposed);
        Assert.Contains("tensor 'model.layers.0.block_sparse_moe.experts.1.w2.weight' has shape [48, 32], config.json implies [32, 48]", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var router = new Dictionary<string, Tensor>(weights) { ["model.layers.1.block_sparse_moe.gate.weight"] = zeros(8, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), router);
        Assert.Contains("tensor 'model.layers.1.block_sparse_moe.gate.weight' has shape [8, 32], config.json implies [4, 32]", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var extra = new Dictionary<string, Tensor>(weights) { ["model.layers.0.block_sparse_moe.experts.4.w1.weight"] = zeros(Ffn, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), extra);
        Assert.Contains("unexpected tensors model.layers.0.block_sparse_moe.experts.4.w1.weight", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
    }
}
